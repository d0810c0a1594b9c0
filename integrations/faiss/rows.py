"""The docstore's rows as its reads return them, and their metadata parsed."""

from __future__ import annotations

import json
from typing import NamedTuple

from integrations.errors import CorruptIndexError


class Row(NamedTuple):
    """A stored row as ``by_id`` reads it."""

    id: str
    fid: int
    text: str
    metadata: str  # JSON text
    code: bytes
    doc: str | None  # the document of a later chunk
    span: str | None  # JSON [start, end]


class Found(NamedTuple):
    """A search hit's row as ``records`` reads it: its document's text, parsed metadata and span, and its
    own code when asked for."""

    id: str
    text: str
    metadata: dict
    span: tuple[int, int] | None
    code: bytes | None


def parse_metadatas(file: str, ids: list[str], texts: list[str]) -> list[dict]:
    """Metadata texts parsed in one call (10 json.loads cost 5 times one); a damaged one names its id and
    the docstore ``file``."""
    try:
        metadatas = json.loads("[" + ",".join(texts) + "]")
        if len(metadatas) == len(texts) and all(isinstance(m, dict) for m in metadatas):
            return metadatas
    except json.JSONDecodeError:
        pass
    return [_parse(file, doc_id, text) for doc_id, text in zip(ids, texts)]


def _parse(file: str, doc_id: str, text: str) -> dict:
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError:
        metadata = None
    if not isinstance(metadata, dict):
        raise CorruptIndexError(f"{file}: the metadata of document {doc_id!r} is not a JSON object")
    return metadata
