"""The derived vector state of a FaissIndex: sealed segments, a tail, and tombstones.

- A **segment** is a FAISS structure (codes, fids and, for HNSW and IVF, its own graph or lists) over the
  rows of one fid range that were live when it was built (its ``floor``, a position in the delete log).
  In a folder it is a file written once and never changed (``integrations.faiss.segment_files``), mapped
  when opened: reopening reads the manifest and a few MiB per segment, not the vectors.
- The **tail** holds the rows above the last segment in memory, searched exactly: a write or a reopen
  never builds a graph or trains lists row by row. Once it holds ``SEAL_ROWS`` rows, a write seals it
  into a segment, and the segment's own HNSW graph or IVF lists are built then, in one go; ``save()`` and
  ``close()`` seal it too when it is that large, ``save(force=True)`` and ``compact()`` at any size.
- **Deletes are tombstones**: the delete log's entries after a part's floor, kept out of results by one
  ID selector over the fid space. A search costs the same after deleting 10% as before.
- The **manifest** (the docstore's ``segments`` info) lists the segments in fid order with their ranges,
  rows, floors, sizes and digests; it changes in the same transactions as the rows, so a segment that
  passes its checks holds the rows the manifest says. One that fails them is rebuilt from the docstore
  with a warning and replaced at the next ``save()``.
- **Merging** is size-tiered: ``FANOUT`` adjacent segments of one tier (by live rows, tiers ``FANOUT``
  times apart) are rebuilt as one, and a segment more than half dead is rebuilt alone, so the segment
  count stays logarithmic in the rows up to the top tier. A build reads the rows the parts before it hold
  (IVF lists hold residuals, so IVF rows come from the docstore). A segment built with
  ``SEAL_ROWS * FANOUT**TOP_TIER`` rows (1.28M) is not merged by size again, even once deletes take it
  below, only rebuilt when more than half dead: rebuilding millions of rows buys a search little (a flat
  or IVF search scans as many rows over several segments as over one), so past it there is a segment per
  1.28M rows, as Lucene caps the size of its merged segments. A new file becomes current in one docstore
  transaction that also checks no other process replaced its inputs first; until then, and after a
  crash, every reader keeps using the old files.

Several processes follow one folder: each builds its tail from the docstore and adopts the segments any
of them records. The class holds no lock; FaissIndex calls it under its own.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import numpy as np

from integrations._shared import disk
from integrations.faiss import segment_files, structures

logger = logging.getLogger(__name__)

SEAL_ROWS = 20_000  # rows in the tail before it is sealed into a segment
FANOUT = 4  # adjacent segments of one size tier merged into one
TOP_TIER = 3  # segments of this tier are merged no further
SLICE = 20_000  # rows copied at a time when a segment is built from the parts before it
TAIL_KIND = "flat"  # exact over a few thousand rows; the ANN structure is built when it seals


@dataclass(eq=False)
class Part:
    """A FAISS structure over the fids ``lo..hi`` that were live at delete-log position ``floor``: a
    segment (``entry`` is its manifest entry, None until it is written) or the tail."""

    index: object  # the IDMap wrapper, None while the tail is empty
    base: object  # the structure inside it
    kind: str
    lo: int
    hi: int
    floor: int
    entry: dict | None = None
    replaces: str | None = None  # the damaged segment file this rebuilt part stands in for

    @property
    def n(self) -> int:
        return 0 if self.index is None else self.index.ntotal


class Segments:
    """The parts of one FaissIndex and which of their rows are dead; ``convert`` turns kept codes into
    what its FAISS structures hold, ``new_index(kind, n)`` makes an empty structure."""

    def __init__(self, folder: str | None, kind: str, precision: str, dimension: int, convert, new_index):
        self.folder, self.kind, self.dimension = folder, kind, dimension
        self.binary = precision == "ubinary"
        self.dtype = np.float32 if precision == "float32" else np.int8
        self.convert, self.new_index = convert, new_index
        self.sealed: list[Part] = []
        self.tail = Part(None, None, TAIL_KIND, 1, 0, 0)
        self.dead = np.zeros(0, np.int64)
        self.fid_w = self.seq_w = 0
        self.entries: list[dict] | None = None  # the manifest these parts follow (None: not read yet)
        self.converting = False
        self._not_dead = None

    @property
    def parts(self) -> list[Part]:
        return [p for p in (*self.sealed, self.tail) if p.n]

    def total(self) -> int:
        return sum(p.n for p in self.parts)

    def live(self) -> int:
        return self.total() - len(self.dead)

    def full(self) -> bool:
        """Whether the tail should be sealed."""
        return self.tail.n >= SEAL_ROWS

    def dead_selector(self):
        """An ID selector that keeps dead rows out (None when there are none)."""
        if not len(self.dead):
            return None
        if self._not_dead is None:
            self._not_dead = structures.exclude(self.dead, self.fid_w)
        return self._not_dead

    # ----------------------------------------------------------------- following the docstore
    def catch_up(self, store, final: bool = True, own=None) -> None:
        """Bring the parts up to the docstore (inside a read or write transaction). ``own``: the (fids, codes)
        this process just inserted, appended as they are when they are every row written since."""
        if self.folder is not None or self.entries is None:
            entries = store.segments() if self.folder is not None else []
            if entries != self.entries:
                self._load(store, entries, final)
        top_fid, top_seq = store.high_water()
        seqs, fids = store.dead_log_after(self.seq_w)
        if own is not None and len(own[0]) and own[0][0] == self.fid_w + 1 and own[0][-1] == top_fid:
            self._append(*own)  # then every delete since applies to a row the parts hold
            self._mark_dead(seqs, fids)
        else:
            keep = fids <= self.fid_w  # rows above it are read live below
            self._mark_dead(seqs[keep], fids[keep])
            for fids, codes in store.rows_after(self.fid_w, self.dtype, self.dimension):
                self._append(fids, codes)
        self.fid_w, self.seq_w = max(self.fid_w, top_fid), top_seq
        self.tail.hi = self.fid_w

    def _load(self, store, entries: list[dict], final: bool) -> None:
        """Adopt the manifest ``entries``: open the segments not open yet, rebuild those that fail their
        checks, and rebuild the tail if the last segment moved."""
        top_fid, top_seq = store.high_water()
        floor = min([e["floor"] for e in entries], default=top_seq)
        seqs, fids = store.dead_log_after(floor)
        mine = {p.entry["file"]: p for p in self.sealed if p.entry} | {p.replaces: p for p in self.sealed if p.replaces}
        sealed, dead = [], [np.zeros(0, np.int64)]
        for entry in entries:
            part = mine.get(entry["file"])
            if part is None or (part.entry is not None and part.entry != entry):
                part = self._open(store, entry, final)
            sealed.append(part)
            dead.append(self._dead_in(part, seqs, fids))
        sealed_hi = max([e["hi"] for e in entries], default=0)
        tail = self.tail
        if tail.lo != sealed_hi + 1 or self.entries is None:
            tail = self._build(store, TAIL_KIND, sealed_hi + 1, top_fid, top_seq)
            self.fid_w, self.seq_w = top_fid, top_seq
        else:
            dead.append(self.dead[self.dead > sealed_hi])
        self.sealed, self.tail, self.entries = sealed, tail, entries
        self.converting = store.get_info("snapshot") is not None  # a folder from before segments
        self.dead, self._not_dead = np.unique(np.concatenate(dead)), None

    def _open(self, store, entry: dict, final: bool) -> Part:
        """The segment ``entry`` names, mapped; rebuilt from the docstore if it is not what the manifest says."""
        file = os.path.join(self.folder, entry["file"])
        try:
            index, base, ids = segment_files.open_mapped(self.folder, entry, self.binary, self.dimension)
            if len(ids) and (ids[0] < entry["lo"] or ids[-1] > entry["hi"] or np.any(np.diff(ids) <= 0)):
                raise ValueError("its fids are not an ascending run within its range")
            return Part(index, base, self.kind, entry["lo"], entry["hi"], entry["floor"], entry)
        except (OSError, RuntimeError, ValueError) as exc:
            if not os.path.exists(file) and not final and not store.writing:
                raise segment_files.Moved from None
            logger.warning("FAISS segment %s cannot be used (%s); rebuilding it from docs.sqlite", file, exc)
        part = self._build(store, self.kind, entry["lo"], entry["hi"], store.high_water()[1])
        part.replaces = entry["file"]
        return part

    @staticmethod
    def _dead_in(part: Part, seqs: np.ndarray, fids: np.ndarray) -> np.ndarray:
        return fids[(fids >= part.lo) & (fids <= part.hi) & (seqs > part.floor)]

    def _mark_dead(self, seqs: np.ndarray, fids: np.ndarray) -> None:
        found = np.concatenate([self._dead_in(p, seqs, fids) for p in (*self.sealed, self.tail)])
        if len(found):
            self.dead, self._not_dead = np.union1d(self.dead, found), None

    def _append(self, fids: np.ndarray, codes: np.ndarray) -> None:
        keep = fids > self.fid_w
        fids, codes = fids[keep], codes[keep]
        if not len(fids):
            return
        if self.tail.index is None:
            self.tail.index, self.tail.base = self.new_index(TAIL_KIND, len(fids))
        self.tail.index.add_with_ids(self.convert(codes), fids)
        self.fid_w = self.tail.hi = int(fids[-1])

    def _build(self, store, kind: str, lo: int, hi: int, floor: int, sources: list[Part] | None = None) -> Part:
        """A part of ``kind`` over the docstore's live rows ``lo..hi`` (inside a transaction), read from the
        parts ``sources`` where they hold them whole (every kind but IVF, whose lists hold residuals), else
        from the docstore; IVF trains on up to 64 rows a list, in 10 rounds of k-means."""
        n = store.count_between(lo, hi)
        if n > 50_000:
            logger.info("%s: building a FAISS segment of %d documents", store.file, n)
        part = Part(None, None, kind, lo, hi, floor)
        if n == 0:
            return part
        part.index, part.base = self.new_index(kind, n)
        if sources and all(p.kind != "ivf" for p in sources):
            batches = self._held_rows(sources)
        else:
            rows = store.rows_after(lo - 1, self.dtype, self.dimension, upto=hi)
            batches = ((fids, self.convert(codes)) for fids, codes in rows)
        pending = []
        if kind == "ivf":
            for batch in batches:
                pending.append(batch)
                if sum(len(f) for f, _ in pending) >= 64 * part.base.nlist:
                    break
            part.base.cp.niter = 10  # as good a recall as FAISS's 25 rounds, here and at 1M, for 40% of the time
            part.base.train(np.concatenate([rows for _, rows in pending])[: 64 * part.base.nlist])
        for fids, rows in [*pending, *batches]:
            part.index.add_with_ids(rows, fids)
        if sources and part.n != n:  # the parts do not hold what the docstore does: build from it instead
            return self._build(store, kind, lo, hi, floor)
        return part

    def _held_rows(self, parts: list[Part]):
        """(fids, rows as FAISS holds them) of the live rows of ``parts``, a slice at a time."""
        for part in parts:
            fids = structures.fids_of(part.index)
            for start in range(0, len(fids), SLICE):
                ids, rows = fids[start : start + SLICE], part.base.reconstruct_n(start, min(SLICE, len(fids) - start))
                live = ~np.isin(ids, self.dead)
                yield (ids.copy(), rows) if live.all() else (ids[live], rows[live])

    # ----------------------------------------------------------------- sealing and merging (writable stores)
    def seal(self, store, force: bool = False) -> None:
        """Turn the tail into a segment once it holds ``SEAL_ROWS`` rows (any, with ``force``, or when the
        folder is converted from a whole-index snapshot)."""
        if not self.converting and (self.tail.n == 0 or (self.tail.n < SEAL_ROWS and not force)):
            return
        with store.read():
            self.catch_up(store)
            tail = self.tail
            if tail.n == 0 and not self.converting:
                return  # another process sealed it
            if tail.n == 0:
                part = None
            elif tail.kind == self.kind and (not len(self.dead) or self.dead[-1] < tail.lo):
                part = tail  # the rows it holds are the live ones: written as it is
            else:
                part = self._build(store, self.kind, tail.lo, self.fid_w, self.seq_w, [tail])
        if self._commit(store, [], [part] if part else []) and part:
            self.tail = Part(None, None, TAIL_KIND, part.hi + 1, part.hi, self.seq_w)

    def merge(self, store, everything: bool = False) -> None:
        """Write the segments rebuilt after damage, then merge by size tiers (all into one with
        ``everything``), until nothing is left to merge."""
        for part in [p for p in self.sealed if p.replaces]:
            self._commit(store, [part], [part])
        while True:
            run = self._plan(everything)
            if not run:
                return
            with store.read():
                self.catch_up(store)
                if any(all(p is not s for s in self.sealed) for p in run):
                    return  # another process changed the segments meanwhile
                merged = self._build(store, self.kind, run[0].lo, run[-1].hi, self.seq_w, run)
            if not self._commit(store, run, [merged] if merged.n else []):
                return
            everything = False

    def _plan(self, everything: bool) -> list[Part]:
        """The next parts to merge: a run of ``FANOUT`` adjacent segments of one tier, or one mostly dead."""
        sealed = [p for p in self.sealed if p.entry is not None or self.folder is None]
        dead = [int(np.count_nonzero((self.dead >= p.lo) & (self.dead <= p.hi))) for p in sealed]
        if everything:
            return sealed if len(sealed) > 1 or any(dead) else []
        for part, gone in zip(sealed, dead):
            if gone * 2 > part.n:
                return [part]
        top = SEAL_ROWS * FANOUT**TOP_TIER  # built this large, a segment is merged no further (by size)
        tiers = [int(math.log(max(p.n - g, SEAL_ROWS) / SEAL_ROWS, FANOUT)) if p.n < top else None
                 for p, g in zip(sealed, dead)]  # fmt: skip
        for start in range(len(sealed) - FANOUT + 1):
            if None not in tiers[start : start + FANOUT] and len(set(tiers[start : start + FANOUT])) == 1:
                return sealed[start : start + FANOUT]
        return []

    def _commit(self, store, old: list[Part], new: list[Part]) -> bool:
        """Make ``new`` current in place of ``old``: their files written, then the manifest changed in one
        transaction. False (and nothing changed) when another process replaced ``old`` or sealed the same
        rows first."""
        if self.folder is None:
            self._replace(old, new)
            return True
        for part in new:
            fields = segment_files.write(self.folder, part.index, self.binary)
            part.entry = fields | {"lo": part.lo, "hi": part.hi, "n": part.n, "floor": part.floor}
        gone = [p.replaces or p.entry["file"] for p in old]
        with store.write():
            current = store.segments()
            names = {e["file"] for e in current}
            lost = any(name not in names for name in gone) or (
                not old and new and max([e["hi"] for e in current], default=0) >= new[0].lo
            )
            if not lost:
                entries = [e for e in current if e["file"] not in gone] + [p.entry for p in new]
                entries.sort(key=lambda e: e["lo"])
                store.set_info("segments", entries)
                snapshot = store.get_info("snapshot")  # a whole-index snapshot from before segments
                store.conn.execute("DELETE FROM info WHERE key = 'snapshot'")
                self.converting = False
        if lost:
            for part in new:
                disk.remove(os.path.join(self.folder, part.entry["file"]))
                part.entry = None
            return False
        for name in gone + ([snapshot["file"]] if isinstance(snapshot, dict) and "file" in snapshot else []):
            if segment_files.NAME.fullmatch(name) or segment_files.OLD_SNAPSHOT.fullmatch(name):
                disk.remove(os.path.join(self.folder, name))
        if current == self.entries:
            self.entries = entries
        self._replace(old, new)
        return True

    def _replace(self, old: list[Part], new: list[Part]) -> None:
        """Put ``new`` in place of ``old``; a part built afresh holds no dead rows of its range."""
        changed = [p for p in new if all(p is not o for o in old)] + [o for o in old if all(o is not p for p in new)]
        for part in changed:
            self.dead = self.dead[(self.dead < part.lo) | (self.dead > part.hi)]
        for part in new:
            part.replaces = None
        kept = [p for p in self.sealed if all(p is not o for o in old)]
        self.sealed = sorted(kept + [p for p in new if all(p is not k for k in kept)], key=lambda p: p.lo)
        self._not_dead = None

    def clean(self) -> None:
        """Remove what crashed writers left in the folder."""
        if self.folder is not None:
            segment_files.clean(self.folder, {p.entry["file"] for p in self.sealed if p.entry})
