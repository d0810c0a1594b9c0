"""A FaissIndex folder seen from outside an open index: what it records about itself, and copying its
docstore into a new folder."""

from __future__ import annotations

import os

from integrations.faiss.docstore import DocStore


def stored_settings(path: str) -> dict | None:
    """``{"kind": ..., "precision": ...}`` of the index in folder ``path``; None if it holds none."""
    config = stored_config(path)
    return {key: config[key] for key in ("kind", "precision") if key in config} or None


def stored_config(path: str) -> dict:
    """Everything the index in folder ``path`` records about itself (its model too); {} if it holds none."""
    file = os.path.join(path, "docs.sqlite")
    if not os.path.isfile(file):
        return {}
    store = DocStore(file)
    try:
        config = store.get_info("config")
    finally:
        store.close()
    return config if isinstance(config, dict) else {}


def copy_to(store: DocStore, path: str) -> DocStore:
    """A copy of ``store`` in the new or empty folder ``path``, without its segments."""
    if os.path.exists(os.path.join(path, "docs.sqlite")):
        raise ValueError(f"{path!r} already holds a FAISS index; save() will not overwrite it")
    if os.path.isdir(path) and os.listdir(path):
        raise ValueError(f"{path!r} is not empty; save() copies an index only into a new or empty folder")
    os.makedirs(path, exist_ok=True)
    target = DocStore(os.path.join(path, "docs.sqlite"))
    store.conn.backup(target.conn)
    target.conn.execute("DELETE FROM info WHERE key IN ('segments', 'snapshot')")
    return target
