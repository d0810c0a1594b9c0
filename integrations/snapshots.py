"""Snapshot files of a FaissIndex folder: written whole, then renamed; crashed writers' leftovers removed.

A snapshot is ``snapshot-PID-RAND.faiss``; it is written as ``.tmp-PID-RAND.faiss``, synced, and renamed,
so a reader never sees half a file. Which snapshot is current lives in the docstore, not in the folder.
A file that is not current is removed only when the process named in it is gone (a crashed save), or by
the process that has just made another snapshot current. Everything else in the folder is left alone.
"""

from __future__ import annotations

import os
import re

from . import faiss_kinds

LEFTOVER = re.compile(r"^(?:\.tmp|snapshot)-(\d+)-[0-9a-f]+\.faiss$")


def write(folder: str, index, binary: bool) -> str:
    """Write ``index`` into ``folder`` and return the new snapshot's file name."""
    tag = f"{os.getpid()}-{os.urandom(4).hex()}"
    tmp, name = os.path.join(folder, f".tmp-{tag}.faiss"), f"snapshot-{tag}.faiss"
    try:
        faiss_kinds.write(index, tmp, binary)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(folder, name))
    except BaseException:
        remove(tmp)
        raise
    return name


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
