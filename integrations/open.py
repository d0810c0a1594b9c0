"""open_index: one way to open a store from a target string, for the CLI, LangChain and tests."""

from __future__ import annotations

from .index import Index


def open_index(target: str | None, encoder, **kwargs) -> Index:
    """A SQLAlchemy URL (``sqlite:///docs.db``, ``postgresql+psycopg://...``) opens a SQLIndex; anything
    else is a FAISS index folder, and None an in-memory FaissIndex. ``kwargs`` go to the index
    (``table=...``, ``kind=...``, ...)."""
    if target is not None and (not isinstance(target, str) or not target):
        raise TypeError(f"target must be a SQLAlchemy URL, a folder path or None, got {target!r}")
    if target is not None and "://" in target:
        from .sql import SQLIndex

        return SQLIndex(encoder, target, **kwargs)
    from .faiss import FaissIndex

    return FaissIndex(encoder, path=target, **kwargs)
