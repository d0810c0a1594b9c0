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
import re
import sqlite3

import numpy as np

from integrations._shared import disk
from integrations._shared.codec import dumps
from integrations.errors import CorruptIndexError
from integrations.faiss.docstore import DocStore

FILES = ("meta.json", "store.npy", "fids.npy", "docs.sqlite")
OLD_TEMPORARY = ("docs.sqlite.migrating", "docs.sqlite.migrating-wal", "docs.sqlite.migrating-shm")
LEFTOVER = re.compile(r"docs\.sqlite\.migrating-(\d+)-[0-9a-f]+(?:-wal|-shm|-journal)?")

logger = logging.getLogger(__name__)


def is_v1(path: str) -> bool:
    return os.path.exists(os.path.join(path, "CURRENT")) and not os.path.exists(os.path.join(path, "docs.sqlite"))


def migrate(path: str, dimension: int) -> None:
    """Write ``path/docs.sqlite`` from the 0.1 generation that ``CURRENT`` names."""
    folder = _generation(path)
    try:
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
    metadatas = [_metadata(path, r[1], r[3]) for r in rows]
    target = os.path.join(path, "docs.sqlite")
    _remove_leftovers(path)
    tmp = f"{target}.migrating-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        docstore = DocStore(tmp)
        with docstore.write():
            docstore.set_info("config", {k: meta[k] for k in ("model", "dimension", "prompts", "kind", "precision")})
            if meta.get("ranges") is not None:
                docstore.set_info("ranges", meta["ranges"])
            codes = store[[row_of[r[0]] for r in rows]] if rows else store[:0]
            new_fids = [r[0] + 1 for r in rows]  # 0.1 counted from 0; the docstore counts from 1
            docstore.insert([r[1] for r in rows], [r[2] for r in rows], metadatas, codes, new_fids)
        docstore.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        docstore.close()
        try:
            os.link(tmp, target)  # never replaces: a docstore another process linked first stays
        except FileExistsError:
            return
    finally:
        for suffix in ("", "-wal", "-shm"):
            disk.remove(tmp + suffix)
    logger.info("%s: moved %d documents of an embedkit 0.1 index into docs.sqlite", path, len(rows))


def _generation(path: str) -> str:
    """The generation folder that ``CURRENT`` names, inside ``path`` and holding no links."""
    try:
        with open(os.path.join(path, "CURRENT"), "rb") as f:
            name = f.read().decode("utf-8").strip()
    except OSError as exc:
        raise CorruptIndexError(f"{path}: the embedkit 0.1 index cannot be read ({exc})") from None
    except UnicodeDecodeError as exc:
        where = os.path.join(path, "CURRENT")
        raise CorruptIndexError(f"{where}: not a generation name (byte {exc.start} is not UTF-8)") from None
    folder = os.path.join(path, name)
    inside = name not in ("", ".", "..") and os.sep not in name and "/" not in name and not os.path.isabs(name)
    if not inside or os.path.islink(folder) or any(os.path.islink(os.path.join(folder, f)) for f in FILES):
        raise CorruptIndexError(f"{path}: CURRENT names {name!r}, not a generation folder inside the index folder")
    return folder


def _metadata(path: str, doc_id: str, text: str) -> str:
    try:
        value = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        value = None
    if not isinstance(value, dict):
        raise CorruptIndexError(f"{path}: the metadata of document {doc_id!r} is not a JSON object")
    return dumps(value)


def _remove_leftovers(path: str) -> None:
    """Files of migrations whose process is gone (and of earlier versions' single temporary name)."""
    for name in os.listdir(path):
        found = LEFTOVER.fullmatch(name)
        if name in OLD_TEMPORARY or found and not disk.alive(int(found.group(1))):
            disk.remove(os.path.join(path, name))
