"""The docstore's rows as its reads return them."""

from __future__ import annotations

from typing import NamedTuple


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
