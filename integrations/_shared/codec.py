"""How values are stored: metadata as JSON, chunk spans as JSON pairs, and integer keys read back."""

from __future__ import annotations

import json

import numpy as np

from embedkit.chunking import Span


def dumps(metadata: dict) -> str:
    """Metadata as stored: JSON with non-ASCII kept as is, so SQLite's JSON paths match non-ASCII keys."""
    return json.dumps(metadata, ensure_ascii=False)


def dump_span(span: Span | None) -> str | None:
    return None if span is None else json.dumps(list(span))


def load_span(text: str | None) -> Span | None:
    return None if text is None else tuple(json.loads(text))


def int_keys(rows) -> np.ndarray:
    """Single-column integer rows as an int64 array."""
    return np.fromiter((r[0] for r in rows), dtype=np.int64)
