"""open_index: one way to open a store from a target string, for the CLI, LangChain and tests."""

from __future__ import annotations

import os
import re

from integrations.encoders import RecordedModel
from integrations.errors import IndexNotFoundError, NotAnIndexError
from integrations.index import Index

FAISS_FILES = ("docs.sqlite", "CURRENT")  # a FAISS index folder, or one written by embedkit 0.1


def open_index(target: str | None, encoder, create: bool = True, **kwargs) -> Index:
    """A SQLAlchemy URL (``sqlite:///docs.db``, ``postgresql+psycopg://...``) opens a SQLIndex; anything
    else is a FAISS index folder, and None an in-memory FaissIndex. With ``create=False`` an index that
    does not exist yet is an IndexNotFoundError (a FileNotFoundError) naming it (see ``check_index``),
    instead of a new empty one.
    ``kwargs`` go to the index (``table=...``, ``kind=...``, ...)."""
    _check_target(target)
    if target is not None and "://" in target:
        from integrations.sql import SQLIndex

        return SQLIndex(encoder, target, create=create, **kwargs)  # which checks, once
    if not create:
        check_index(target)
    from integrations.faiss import FaissIndex

    return FaissIndex(encoder, path=target, **kwargs)


def open_store(db: str, model, sparse_model, device=None, sparse: bool = True, **options) -> Index:
    """``open_index`` with a sparse encoder (with ``sparse``): the one the index records, or ``sparse_model``:
    a name, which a new index then records, or a loaded SparseEncoder, used only by an index that records
    that very model (``embedkit serve``'s, which leaves other indexes as they are)."""
    index = open_index(db, model, **options)
    recorded = (index.sparse.recorded or {}).get("model")
    if sparse_model is not None and not isinstance(sparse_model, str):
        sparse_model = sparse_model if recorded == sparse_model.model_name else None
    encoder = (sparse_model or recorded) if sparse else None
    if encoder is None:
        return index
    from embedkit import SparseEncoder

    try:
        encoder = SparseEncoder(encoder, device=device) if isinstance(encoder, str) else encoder
    except BaseException:
        index.close()
        raise
    if recorded is not None:  # the index keeps sparse vectors already: it takes the encoder as it is open
        index.sparse.encoder = encoder
        index.sparse.adopt(index.sparse.recorded, None, db)  # warns if it records another model
        return index
    index.close()  # a new leg is given to an empty index as it opens, under its write lock
    return open_index(db, model, sparse_encoder=encoder, **options)


def check_index(target: str | None, table: str = "documents") -> None:
    """IndexNotFoundError unless ``target`` names an index that exists; creates nothing and needs no model."""
    _check_target(target)
    if target is not None and "://" in target:
        from integrations.sql.engines import check_exists

        check_exists(target, table)
    elif target is not None and os.path.isfile(target):
        from integrations._shared.sqlite_files import file_hint

        raise NotAnIndexError(file_hint(target))
    elif target is None or not any(os.path.exists(os.path.join(target, f)) for f in FAISS_FILES):
        raise IndexNotFoundError(f"no index at {target!r}: not a FAISS index folder or a database URL")


def recorded_model(target: str, table: str = "documents") -> RecordedModel | None:
    """A stand-in for the model the existing index at ``target`` records, to open it without loading the
    model (see ``RecordedModel``); None if it records none (an embedkit 0.1 folder, damaged settings)."""
    check_index(target, table)
    if "://" in target:
        from integrations.sql.engines import recorded_info

        info = recorded_info(target, table)
    else:
        from integrations.faiss.folders import stored_config

        info = stored_config(target)
    try:
        return RecordedModel(info) if info else None
    except (KeyError, TypeError, ValueError):
        return None


def _check_target(target) -> None:
    if target is not None and (not isinstance(target, str) or not target):
        raise TypeError(f"target must be a SQLAlchemy URL, a folder path or None, got {target!r}")
    if target is not None and "://" not in target and re.match(r"[A-Za-z][A-Za-z0-9+.-]+:", target):
        raise ValueError(f"{target!r} looks like a URL but lacks '//' (e.g. sqlite:///docs.db, sqlite:////abs/docs.db)")
