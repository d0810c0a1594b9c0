"""Bytes on disk of a store: a folder (FAISS), or a SQLite file with its write-ahead log (not the ``-shm``
index into that log, which lives while a connection is open)."""

from __future__ import annotations

import errno
import os


def size(path: str | None) -> int | None:
    """Every file under the folder ``path``, or the file with its ``-wal`` (None for no path or nothing
    there)."""
    if path is None or not os.path.exists(path):
        return None
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError, or faiss's RuntimeError from a failed write) says the disk is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, (OSError, RuntimeError)) and any(
        words in str(exc) for words in ("No space left on device", "Disk quota exceeded")
    )
