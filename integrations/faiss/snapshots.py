"""Snapshot files of a FaissIndex folder: written whole, then renamed; checked when read; crashed writers'
leftovers removed.

A snapshot is ``snapshot-PID-RAND.faiss``; it is written as ``.tmp-PID-RAND.faiss``, synced, and renamed,
so a reader never sees half a file. Which snapshot is current lives in the docstore, not in the folder,
with the SHA-256 of the file: a damaged or swapped file is refused when read (the caller then rebuilds).
The docstore refuses an entry that names anything but a snapshot file in the folder (a path, a link).
A file that is not current is removed only when the process named in it is gone (a crashed save), or by
the process that has just made another snapshot current. Everything else in the folder is left alone.
"""

from __future__ import annotations

import hashlib
import os
import re

import numpy as np

from integrations._shared import disk
from integrations.errors import StorageError
from integrations.faiss import structures

NAME = re.compile(r"snapshot-(\d+)-[0-9a-f]+\.faiss")
LEFTOVER = re.compile(r"^(?:\.tmp|snapshot)-(\d+)-[0-9a-f]+\.faiss$")


def write(folder: str, index, binary: bool) -> tuple[str, str]:
    """Write ``index`` into ``folder``; return the new snapshot's file name and SHA-256."""
    tag = f"{os.getpid()}-{os.urandom(4).hex()}"
    tmp, name = os.path.join(folder, f".tmp-{tag}.faiss"), f"snapshot-{tag}.faiss"
    data = structures.serialize(index, binary)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(folder, name))
    except BaseException as exc:
        remove(tmp)
        if disk.is_full(exc):
            raise StorageError(f"{folder}: the disk is full ({exc}); the last saved state is kept") from None
        raise
    return name, hashlib.sha256(data).hexdigest()


def read(folder: str, snap: dict, binary: bool):
    """(the IDMap2 wrapper, the structure inside it) of the snapshot ``snap`` names; ValueError when its
    SHA-256 differs from the recorded one (entries written before checksums have none)."""
    with open(os.path.join(folder, snap["file"]), "rb") as f:
        data = f.read()
    if "sha256" in snap and hashlib.sha256(data).hexdigest() != snap["sha256"]:
        raise ValueError("its checksum differs from the one recorded with it")
    return structures.deserialize(np.frombuffer(data, dtype=np.uint8), binary)


def dead_rows(index, fids: np.ndarray, snap: dict, store, dimension: int) -> np.ndarray:
    """The snapshot's rows whose documents are gone since; ValueError unless it holds every live row of the
    docstore ``store`` it should and nothing else (the rows up to its fid, and rows deleted after its floor)."""
    if index.d != dimension or index.ntotal != len(fids) or len(np.unique(fids)) != len(fids):
        raise ValueError("its shape does not match the docstore")
    live = store.fids_upto(snap["fid"])
    dead = np.setdiff1d(fids, live)
    if len(np.setdiff1d(live, fids)) or len(np.setdiff1d(dead, store.dead_after(snap["floor"]))):
        raise ValueError("the documents it holds are not the docstore's")
    return dead


class Moved(Exception):
    """The snapshot named in the docstore was replaced (and removed) while this process read it."""


def clean(folder: str, current: str | None) -> None:
    """Remove temporary files and snapshots that crashed processes left in ``folder``."""
    for name in os.listdir(folder):
        found = LEFTOVER.match(name)
        if found and name != current and not alive(int(found.group(1))):
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
