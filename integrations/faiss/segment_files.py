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

import os
import re

import faiss

from integrations._shared import disk
from integrations.faiss import structures

NAME = re.compile(r"segment-(\d+)-[0-9a-f]+\.faiss")
OLD_SNAPSHOT = re.compile(r"snapshot-(\d+)-[0-9a-f]+\.faiss")
LEFTOVER = re.compile(r"^(?:\.tmp|segment|snapshot)-(\d+)-[0-9a-f]+\.faiss$")
MAPPED = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY


def write(folder: str, index, binary: bool) -> dict:
    """Write ``index`` into ``folder``; return its manifest fields (file, size, ids and ends digests)."""
    write = faiss.write_index_binary if binary else faiss.write_index
    name = disk.write_whole(folder, ".faiss", lambda tmp: write(index, tmp), "the last saved state is kept")
    file = os.path.join(folder, name)
    ids = disk.keys_digest(structures.fids_of(index))
    return {"file": name, "size": os.path.getsize(file), "ids": ids, "ends": disk.ends_digest(file)}


def open_mapped(folder: str, entry: dict, binary: bool, dimension: int):
    """(the IDMap wrapper, the structure inside it, its fids) of the segment ``entry`` names, mapped;
    ValueError when it is not the file the manifest describes."""
    file = os.path.join(folder, entry["file"])
    if os.path.getsize(file) != entry["size"]:
        raise ValueError(f"it has {os.path.getsize(file)} bytes, not {entry['size']}")
    if disk.ends_digest(file) != entry["ends"]:
        raise ValueError("its checksum differs from the one recorded with it")
    index = (faiss.read_index_binary if binary else faiss.read_index)(file, MAPPED)
    fids = structures.fids_of(index)
    if index.d != dimension or index.ntotal != entry["n"] or disk.keys_digest(fids) != entry["ids"]:
        raise ValueError("the documents it holds are not the ones recorded with it")
    inner = index.index
    return index, faiss.downcast_IndexBinary(inner) if binary else faiss.downcast_index(inner), fids


class Moved(Exception):
    """A segment named in the manifest was replaced (and removed) while this process read it."""


def clean(folder: str, current: set[str]) -> None:
    """Remove temporary files and segments that crashed processes left in ``folder``."""
    for name in os.listdir(folder):
        found = LEFTOVER.match(name)
        if found and name not in current and not disk.alive(int(found.group(1))):
            disk.remove(os.path.join(folder, name))
