"""How SQLIndex reads its rows back: metadata from JSON (or JSONB), vectors from bytes (or pgvector), and
hits from both; damage names the document."""

from __future__ import annotations

import json

import numpy as np

from integrations.errors import CorruptIndexError
from integrations.records import Hit


class RowReader:
    """Reads the rows of the table at ``where`` (for messages), of ``dimension``-d vectors."""

    def __init__(self, where: str, dimension: int):
        self.where, self.dimension = where, dimension

    def metadata(self, row) -> dict:
        value = row.metadata
        try:
            value = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise CorruptIndexError(f"{self.where}: the metadata of document {row.id!r} is not a JSON object")
        return value

    def vector(self, row) -> np.ndarray:
        value = row.embedding
        if isinstance(value, (bytes, memoryview)):
            if len(value) != 4 * self.dimension:
                raise CorruptIndexError(f"{self.where}: the embedding of document {row.id!r} is damaged")
            return np.frombuffer(bytes(value), dtype="<f4").astype(np.float32)
        if hasattr(value, "to_numpy"):  # pgvector's Vector, where its psycopg loader is registered
            value = value.to_numpy()
        return np.asarray(value, dtype=np.float32)

    def hit(self, row, score: float, span, with_vectors: bool) -> Hit:
        """A hit from a row of (id, text, metadata[, embedding]); its vector with ``with_vectors``."""
        hit = Hit(row.id, row.text, self.metadata(row), score, span=span)
        if with_vectors:
            hit.vector = self.vector(row)
        return hit
