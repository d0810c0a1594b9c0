"""Files on disk: a store's bytes (a folder, or a SQLite file with its write-ahead log, not the ``-shm``
index into that log, which lives while a connection is open), a full disk, and the helpers of derived
files written whole and renamed (segments): syncing a folder, digests that check a file without reading
it all, and removing what a crashed process left."""

from __future__ import annotations

import errno
import hashlib
import os

import numpy as np

from integrations.errors import StorageError

ENDS = 1 << 20  # bytes at each end of a file that its digest covers


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


def write_whole(folder: str, suffix: str, write, kept: str) -> str:
    """A new file in ``folder``, written whole: ``write(path)`` fills ``.tmp-PID-RAND<suffix>``, which is
    synced and renamed to ``segment-PID-RAND<suffix>``, so no reader sees half a file; returns that name.
    A full disk is a StorageError that names the errno and says what is ``kept``."""
    tag = f"{os.getpid()}-{os.urandom(4).hex()}"
    tmp, name = os.path.join(folder, f".tmp-{tag}{suffix}"), f"segment-{tag}{suffix}"
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(folder, name))
        sync_folder(folder)
    except BaseException as exc:
        remove(tmp)
        if is_full(exc):  # FAISS's own message quotes its C++ source: name the errno instead
            full = f"[Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}"
            raise StorageError(f"{folder}: the disk is full ({full}); {kept}") from None
        raise
    return name


def sync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def keys_digest(keys: np.ndarray) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(keys, dtype="<i8"))).hexdigest()


def ends_digest(file: str) -> str:
    """A SHA-256 of the first and last MiB of ``file``."""
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        digest.update(f.read(ENDS))
        size = f.seek(0, os.SEEK_END)
        f.seek(max(ENDS, size - ENDS))
        digest.update(f.read())
    return digest.hexdigest()


def alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove(file: str) -> None:
    try:
        os.remove(file)
    except FileNotFoundError:
        pass
