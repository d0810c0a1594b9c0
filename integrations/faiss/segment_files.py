"""Segment files of a FaissIndex folder: written whole, then renamed; checked when opened; crashed writers'
leftovers removed.

A segment is ``segment-PID-RAND.faiss``, a FAISS structure in FAISS's own format; it is written as
``.tmp-PID-RAND.faiss``, synced, and renamed, so a reader never sees half a file, and it is never changed
after. Which segments are current lives in the docstore's manifest, with each file's size and SHA-256
digests of its fids and of its first and last MiB: a damaged or swapped file is refused when opened (the
caller then rebuilds it). Those checks read a few MiB, not the codes, so opening costs the same at any
size; the codes are mapped (``IO_FLAG_MMAP_IFC``) and paged in as searches touch them. A file that is not
current is removed only when the process named in it is gone (a crashed writer), or by the process that
has just replaced it in the manifest. ``snapshot-*.faiss`` files are whole-index snapshots from before
segments, removed once the folder's first segments are recorded. Everything else in the folder is left
alone.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re

import faiss
import numpy as np

from integrations._shared import disk
from integrations.errors import StorageError
from integrations.faiss import structures

NAME = re.compile(r"segment-(\d+)-[0-9a-f]+\.faiss")
OLD_SNAPSHOT = re.compile(r"snapshot-(\d+)-[0-9a-f]+\.faiss")
LEFTOVER = re.compile(r"^(?:\.tmp|segment|snapshot)-(\d+)-[0-9a-f]+\.faiss$")
ENDS = 1 << 20  # bytes at each end of a file that its digest covers
MAPPED = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY


def write(folder: str, index, binary: bool) -> dict:
    """Write ``index`` into ``folder``; return its manifest fields (file, size, ids and ends digests)."""
    tag = f"{os.getpid()}-{os.urandom(4).hex()}"
    tmp, name = os.path.join(folder, f".tmp-{tag}.faiss"), f"segment-{tag}.faiss"
    try:
        (faiss.write_index_binary if binary else faiss.write_index)(index, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(folder, name))
        sync_folder(folder)
    except BaseException as exc:
        remove(tmp)
        if disk.is_full(exc):  # FAISS's own message quotes its C++ source: name the errno instead
            full = f"[Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}"
            raise StorageError(f"{folder}: the disk is full ({full}); the last saved state is kept") from None
        raise
    file = os.path.join(folder, name)
    ids = ids_digest(structures.fids_of(index))
    return {"file": name, "size": os.path.getsize(file), "ids": ids, "ends": ends_digest(file)}


def open_mapped(folder: str, entry: dict, binary: bool, dimension: int):
    """(the IDMap2 wrapper, the structure inside it, its fids) of the segment ``entry`` names, mapped;
    ValueError when it is not the file the manifest describes."""
    file = os.path.join(folder, entry["file"])
    if os.path.getsize(file) != entry["size"]:
        raise ValueError(f"it has {os.path.getsize(file)} bytes, not {entry['size']}")
    if ends_digest(file) != entry["ends"]:
        raise ValueError("its checksum differs from the one recorded with it")
    index = (faiss.read_index_binary if binary else faiss.read_index)(file, MAPPED)
    fids = structures.fids_of(index)
    if index.d != dimension or index.ntotal != entry["n"] or ids_digest(fids) != entry["ids"]:
        raise ValueError("the documents it holds are not the ones recorded with it")
    inner = index.index
    return index, faiss.downcast_IndexBinary(inner) if binary else faiss.downcast_index(inner), fids


def ids_digest(fids: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(fids, dtype="<i8").tobytes()).hexdigest()


def ends_digest(file: str) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        digest.update(f.read(ENDS))
        size = f.seek(0, os.SEEK_END)
        f.seek(max(ENDS, size - ENDS))
        digest.update(f.read())
    return digest.hexdigest()


def sync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Moved(Exception):
    """A segment named in the manifest was replaced (and removed) while this process read it."""


def clean(folder: str, current: set[str]) -> None:
    """Remove temporary files and segments that crashed processes left in ``folder``."""
    for name in os.listdir(folder):
        found = LEFTOVER.match(name)
        if found and name not in current and not alive(int(found.group(1))):
            remove(os.path.join(folder, name))


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
