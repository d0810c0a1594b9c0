"""The persistent part of SQLIndex's search on a SQLite file: segments of vectors, mapped when opened, so
that reopening reads a few MiB and the rows changed since, not every vector.

- A **segment** is a file ``segment-PID-RAND.npy`` in the folder ``<database>-segments/<table>/``: the
  vectors of some rows (a float32 ``.npy`` array, mapped when opened and paged in as searches touch it)
  followed by their rowids (ascending). It was read at position ``seq`` of the change log
  (``integrations.sql.sqlite_changes``): the log's entries after it name its rows that were updated or
  deleted since, which searches skip.
- The **list** of a table's segments, with each file's rows, log position, size and SHA-256 digests of its
  rowids and of its first and last MiB, and the table's state (highest rowid, log position) that the
  segments cover together, is a row of ``embedkit_segments`` in the database itself: it changes in one
  transaction, and a copied, restored or replaced database never adopts files that are not its own. A
  file that fails its checks is skipped with a warning: the table is read instead, and the next ``save()``
  writes the segments anew.
- Rows changed since the segments stay in memory. ``save()`` and ``close()`` write them as a new segment
  once there are ``SEAL_ROWS`` of them (``save(force=True)``: any), then merge the newest two segments
  while the last holds at least half the live rows of the one before it, and rewrite a segment more than
  half dead, so the count of segments stays logarithmic in the rows. The change log keeps every entry
  that a segment still needs.

Several processes share the folder: a new list is committed only if no other process changed it since
this one read it (otherwise its new files are removed and it reads the other's list next time). A file
that the list no longer names is removed by the process that replaced it, or later by the process named
in it, or, once that process is gone, by any process that saves.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading

import numpy as np

from integrations._shared import disk, sqlite_files
from integrations.sql.sqlite_changes import LOG_TABLE, SEGMENTS_TABLE, log_after
from integrations.sql.vector_cache import VectorCache

logger = logging.getLogger(__name__)

SEAL_ROWS = 20_000  # changed rows held in memory before save() writes them as a segment
SAVING = threading.Lock()  # the saves of this process, one at a time (see Segments.save)
NAME = re.compile(r"segment-\d+-[0-9a-f]+\.npy")
LEFTOVER = re.compile(r"^(?:\.tmp|segment)-(\d+)-[0-9a-f]+\.npy$")


def folder_of(database: str, key: str) -> str:
    return os.path.join(f"{database}-segments", key)


def of_database(database: str | None, key: str, dimension: int, label: str) -> Segments | None:
    """The segments of table ``key`` in the SQLite file ``database`` (None for a database in memory)."""
    if database is None:
        return None
    read_only = sqlite_files.on_read_only_storage(database)
    return Segments(folder_of(database, key), key, dimension, label, read_only)


def bytes_on_disk(database: str | None, key: str) -> int | None:
    """The SQLite file with its write-ahead log and the segments of table ``key``."""
    found = disk.size(database)
    return found if found is None else found + (disk.size(folder_of(database, key)) or 0)


class Segments:
    """The segments of table ``key`` in ``folder``; ``label`` names the table in messages. With
    ``read_only`` (a database on read-only storage) they are read, never written."""

    def __init__(self, folder: str, key: str, dimension: int, label: str, read_only: bool):
        self.folder, self.key, self.dimension, self.label = folder, key, dimension, label
        self.read_only = read_only
        self.listed: str | None = None  # the list as this process last read or wrote it
        self.skipped = False  # whether this process found the list unusable and read the table instead

    def load(self, conn, cache: VectorCache) -> None:
        """Put the table's segments under ``cache`` (which holds nothing yet), each with its stale rows
        masked, at the state they cover; leave ``cache`` unset when there are none or one is unusable."""
        self.listed = self._read(conn)
        self.skipped = self.listed is not None  # until its segments are in place
        if self.listed is None:
            return
        listing = _parse(self.listed)
        if listing is None:
            logger.warning("%s: its list of segments is damaged; reading the table instead", self.label)
            return
        entries = listing["segments"]
        found = log_after(conn, self.key, min((e["seq"] for e in entries), default=listing["seq"]))
        if found is None:
            logger.warning("%s: the change log no longer reaches its segments; reading the table instead", self.label)
            return
        parts = []
        for entry in entries:
            try:
                part = self._open(entry)
            except (OSError, ValueError) as exc:
                logger.warning(
                    "%s: segment %s cannot be used (%s); reading the table instead, and writing new segments "
                    "at the next save()",
                    self.label,
                    entry["file"],
                    exc,
                )
                return
            part._kill(found[1][found[0] > entry["seq"]])
            parts.append(part)
        cache.adopt(parts, (listing["top"], listing["seq"]))
        self.skipped = False

    def save(self, begin, cache: VectorCache, force: bool) -> None:
        """Write the rows ``cache`` holds (at least ``SEAL_ROWS``, any with ``force``) as a segment, merge
        and rewrite segments as the module says, and commit the new list in a transaction from ``begin()``
        unless another process changed the list first. ``cache`` must be up to date. Saves in one process
        take turns: each removes the unlisted files of its own process, which would otherwise include the
        files another instance has written and not yet listed."""
        if self.read_only:
            return
        with SAVING:
            self._save(begin, cache, force)

    def _save(self, begin, cache: VectorCache, force: bool) -> None:
        own = (cache.keys[cache.live], cache.matrix[cache.live])
        heavy = [p for p in cache.beneath if (~p.live).sum() * 2 > len(p.live)]
        current = _files(self.listed)
        if not heavy and not self.skipped and (len(own[0]) == 0 or len(own[0]) < SEAL_ROWS and not force):
            with begin() as conn:  # the list as it is now: another instance may have replaced this one's
                listed = _files(self._read(conn))
            if listed:
                self._clean(listed)
            return
        pending = [(p.keys[p.live], p.matrix[p.live]) if p in heavy else p for p in cache.beneath]
        if len(own[0]):
            pending.append(own)
        while len(pending) > 1 and 2 * _live(pending[-1]) >= _live(pending[-2]):
            pending[-2:] = [_merge(pending[-2], pending[-1])]
        pending = [item for item in pending if _live(item)]
        os.makedirs(self.folder, exist_ok=True)
        written, committed = [], False
        try:
            for n, item in enumerate(pending):
                if not isinstance(item, VectorCache):
                    pending[n] = self._write(*item, cache.state[1])
                    written.append(pending[n].entry["file"])
            entries = [p.entry for p in pending]
            text = json.dumps({"top": cache.state[0], "seq": cache.state[1], "segments": entries})
            committed = self._commit(begin, text, min((e["seq"] for e in entries), default=cache.state[1]))
        finally:
            if not committed:
                for name in written:
                    disk.remove(os.path.join(self.folder, name))
        if not committed:
            cache.state = None  # read the list the other process wrote at the next search
            return
        for name in current - {e["file"] for e in entries}:
            disk.remove(os.path.join(self.folder, name))
        cache.adopt(pending, cache.state)
        self.skipped = False
        self._clean({e["file"] for e in entries})

    def _commit(self, begin, text: str, keep: int) -> bool:
        with begin() as conn:
            if self._read(conn) != self.listed:
                logger.info("%s: another process wrote segments first; using those", self.label)
                return False
            floor = conn.exec_driver_sql(f"SELECT seq FROM {LOG_TABLE}_floor WHERE table_name = ?", (self.key,))
            if (floor.scalar() or 0) > keep:
                return False  # the log was pruned past these rows' position meanwhile: they would be unusable
            conn.exec_driver_sql(f"INSERT OR REPLACE INTO {SEGMENTS_TABLE} VALUES (?, ?, ?)", (self.key, text, keep))
        self.listed = text
        return True

    def _read(self, conn) -> str | None:
        sql = f"SELECT segments FROM {SEGMENTS_TABLE} WHERE table_name = ?"
        return conn.exec_driver_sql(sql, (self.key,)).scalar()

    def _write(self, keys: np.ndarray, matrix: np.ndarray, seq: int) -> VectorCache:
        def write(path: str) -> None:
            with open(path, "wb") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(matrix, "<f4"), allow_pickle=False)
                np.lib.format.write_array(f, np.ascontiguousarray(keys, "<i8"), allow_pickle=False)

        name = disk.write_whole(self.folder, ".npy", write, "searches read the table instead")
        file = os.path.join(self.folder, name)
        entry = {"file": name, "n": len(keys), "seq": seq, "size": os.path.getsize(file)}
        entry |= {"keys": disk.keys_digest(keys), "ends": disk.ends_digest(file)}
        return self._open(entry)

    def _open(self, entry: dict) -> VectorCache:
        """The segment ``entry`` names, its vectors mapped; ValueError when the file is not the one it
        describes."""
        file = os.path.join(self.folder, entry["file"])
        if os.path.getsize(file) != entry["size"]:
            raise ValueError(f"it has {os.path.getsize(file)} bytes, not {entry['size']}")
        if disk.ends_digest(file) != entry["ends"]:
            raise ValueError("its checksum differs from the one recorded with it")
        n, d = entry["n"], self.dimension
        with open(file, "rb") as f:
            at, matrix_header = _header(f)
            f.seek(at + 4 * n * d)
            keys_header = _header(f)[1]
            keys = np.fromfile(f, "<i8", count=n)
        if matrix_header != ((n, d), np.dtype("<f4")) or keys_header != ((n,), np.dtype("<i8")):
            raise ValueError("its arrays do not have the shapes recorded with it")
        if disk.keys_digest(keys) != entry["keys"]:
            raise ValueError("the rows it holds are not the ones recorded with it")
        part = VectorCache(d, self.label)
        part.keys, part.live, part.entry = keys, np.ones(n, bool), entry
        part.matrix = np.memmap(file, "<f4", "r", offset=at, shape=(n, d)) if n else part.matrix
        return part

    def _clean(self, current: set[str]) -> None:
        """Remove the files the list does not name that this process or a process now gone wrote."""
        for name in os.listdir(self.folder):
            found = LEFTOVER.match(name)
            pid = int(found.group(1)) if found else None
            if found and name not in current and (pid == os.getpid() or not disk.alive(pid)):
                disk.remove(os.path.join(self.folder, name))


def _files(listed: str | None) -> set[str]:
    """The files a list of segments names."""
    return {e["file"] for e in (_parse(listed or "") or {"segments": []})["segments"]}


def _parse(text: str) -> dict | None:
    """The list of segments stored as ``text``; None when it is not one (damaged, or naming a file outside
    the folder)."""
    try:
        listing = json.loads(text)
        ints = [listing["top"], listing["seq"]] + [e[k] for e in listing["segments"] for k in ("n", "seq", "size")]
        names = [e["file"] for e in listing["segments"]] + [e[k] for e in listing["segments"] for k in ("keys", "ends")]
    except (ValueError, KeyError, TypeError):
        return None
    if not all(type(i) is int for i in ints) or not all(isinstance(n, str) for n in names):
        return None
    return listing if all(NAME.fullmatch(e["file"]) for e in listing["segments"]) else None


def _header(f) -> tuple[int, tuple]:
    """(offset of the data, (shape, dtype)) of the .npy array that starts at ``f``'s position."""
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(f)
    if fortran:
        raise ValueError("its arrays are not in row order")
    return f.tell(), (shape, dtype)


def _live(item) -> int:
    return int(item.live.sum()) if isinstance(item, VectorCache) else len(item[0])


def _merge(*items) -> tuple[np.ndarray, np.ndarray]:
    """(rowids, vectors) of the live rows of ``items`` (segments or such pairs), in rowid order."""
    pairs = [(i.keys[i.live], i.matrix[i.live]) if isinstance(i, VectorCache) else i for i in items]
    keys = np.concatenate([p[0] for p in pairs])
    order = np.argsort(keys, kind="stable")
    return keys[order], np.concatenate([p[1] for p in pairs])[order]
