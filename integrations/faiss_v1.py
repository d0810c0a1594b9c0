"""Opening a FaissIndex folder written by embedkit 0.1: its documents move into the docstore once.

0.1 wrote each ``save()`` as a generation folder (``index.faiss``, ``store.npy`` with the kept vectors,
``fids.npy``, a ``docs.sqlite`` and ``meta.json``) named by a ``CURRENT`` file. The documents and kept
vectors are copied, in their old order, into the new ``docs.sqlite``; the FAISS structure is rebuilt
from them on first open. The old files are left in place, untouched.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3

import numpy as np

from .docstore import DocStore
from .index import CorruptIndexError, dumps

logger = logging.getLogger(__name__)


def is_v1(path: str) -> bool:
    return os.path.exists(os.path.join(path, "CURRENT")) and not os.path.exists(os.path.join(path, "docs.sqlite"))


def migrate(path: str, dimension: int) -> None:
    """Write ``path/docs.sqlite`` from the 0.1 generation that ``CURRENT`` names."""
    try:
        with open(os.path.join(path, "CURRENT")) as f:
            folder = os.path.join(path, f.read().strip())
        with open(os.path.join(folder, "meta.json")) as f:
            meta = json.load(f)
        store = np.load(os.path.join(folder, "store.npy"), allow_pickle=False)
        fids = np.load(os.path.join(folder, "fids.npy"), allow_pickle=False)
        old = sqlite3.connect(f"file:{os.path.join(folder, 'docs.sqlite')}?mode=ro", uri=True)
        rows = old.execute("SELECT fid, id, text, metadata FROM docs ORDER BY fid").fetchall()
        old.close()
        assert isinstance(meta, dict) and store.shape == (len(fids), dimension), "the vectors do not fit"
        wanted = np.float32 if meta["precision"] == "float32" else np.int8
        assert store.dtype == wanted, f"store.npy holds {store.dtype}, not {np.dtype(wanted)}"
    except (OSError, ValueError, KeyError, sqlite3.DatabaseError, AssertionError, json.JSONDecodeError) as exc:
        raise CorruptIndexError(f"{path}: the embedkit 0.1 index cannot be read ({exc})") from None
    row_of = {int(f): r for r, f in enumerate(fids) if f >= 0}
    if {r[0] for r in rows} != set(row_of):
        raise CorruptIndexError(f"{path}: the embedkit 0.1 index's vectors and docstore disagree")
    target = os.path.join(path, "docs.sqlite")
    for leftover in ("", "-wal", "-shm"):  # of a migration that crashed
        if os.path.exists(target + ".migrating" + leftover):
            os.remove(target + ".migrating" + leftover)
    tmp = DocStore(target + ".migrating")
    with tmp.write():
        tmp.set_info("config", {k: meta[k] for k in ("model", "dimension", "prompts", "kind", "precision")})
        if meta.get("ranges") is not None:
            tmp.set_info("ranges", meta["ranges"])
        codes = store[[row_of[r[0]] for r in rows]] if rows else store[:0]
        metadatas = [dumps(json.loads(r[3])) for r in rows]
        fids = [r[0] + 1 for r in rows]  # 0.1 counted from 0; the docstore counts from 1
        tmp.insert([r[1] for r in rows], [r[2] for r in rows], metadatas, codes, fids)
    tmp.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    tmp.close()
    os.replace(target + ".migrating", target)
    logger.info("%s: moved %d documents of an embedkit 0.1 index into docs.sqlite", path, len(rows))
