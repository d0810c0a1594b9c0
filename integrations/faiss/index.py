"""FaissIndex: the store class; the design is in the package docstring (``integrations.faiss``)."""

from __future__ import annotations

import logging
import os
import threading

import numpy as np

from embedkit.quantization import calibration_ranges, dequantize_int8, quantize_embeddings
from integrations._shared import disk, sqlite_files
from integrations._shared.codec import dump_span
from integrations._shared.filter_cache import MatchCache
from integrations._shared.passages import spans_by_document
from integrations._shared.validation import check_positive_int
from integrations.errors import CorruptIndexError, NotAnIndexError, UnknownIdsError
from integrations.faiss import migrate_0_1, segment_files, structures
from integrations.faiss.docstore import DocStore
from integrations.faiss.folders import copy_to, stored_settings
from integrations.faiss.rows import parse_metadatas
from integrations.faiss.search import FaissSearch
from integrations.faiss.segments import Segments
from integrations.index import Index, guarded
from integrations.records import Hit, Record
from integrations.sparse import as_dict

logger = logging.getLogger(__name__)

KINDS = ("flat", "hnsw", "ivf")
STORED_PRECISIONS = ("float32", "int8", "ubinary")  # of the encoder's PRECISIONS, those FAISS can search


class FaissIndex(FaissSearch, Index):
    """An Index over FAISS, its documents kept in ``docs.sqlite`` in the folder ``path`` (None: in memory).

    - ``kind``: ``"flat"`` (exact), ``"hnsw"`` or ``"ivf"``.
    - ``precision``: ``"float32"``, ``"int8"`` (per-dimension scalar quantization) or ``"ubinary"`` (1 bit a
      dimension, searched by Hamming distance); ``rescore`` re-ranks ``k * rescore_multiplier`` candidates
      of the quantized kinds with their int8 codes.
    - ``hnsw_m``, ``ef_construction``, ``ef_search``: HNSW's graph degree and search depths.
    - ``nlist`` (default about sqrt(n) for a segment of n rows): IVF's lists, per segment; ``nprobe``: the
      lists probed, as in one IVF of sqrt(rows) lists over the whole index (each segment probes that share
      of its own lists, at least one; default: a third of each segment's lists, at least 16).
    - ``chunk_tokens``, ``chunk_overlap``: how long texts are split (see ``Index``).
    - ``sparse_encoder``: a ``SparseEncoder`` whose vectors the docstore keeps beside the rows, for
      ``mode="sparse"`` and hybrid search (given to a new index; see ``integrations.sparse``).

    Every write is durable when it returns; the FAISS structures are kept as segments for a fast reopen
    (``integrations.faiss``)."""

    def __init__(
        self,
        encoder,
        path: str | None = None,
        chunk_tokens: int | None = None,
        chunk_overlap: int = 32,
        kind: str = "flat",
        precision: str = "float32",
        rescore: bool = True,
        rescore_multiplier: int = 4,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        nlist: int | None = None,
        nprobe: int | None = None,
        sparse_encoder=None,
    ):
        super().__init__(encoder, chunk_tokens, chunk_overlap, sparse_encoder)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if precision not in STORED_PRECISIONS:
            raise ValueError(f"precision must be one of {STORED_PRECISIONS}, got {precision!r}")
        if precision == "ubinary" and self.dimension % 8:
            raise ValueError(f"ubinary needs a dimension divisible by 8, got {self.dimension}")
        positive = {"rescore_multiplier": rescore_multiplier, "hnsw_m": hnsw_m}
        for name, value in (positive | {"ef_construction": ef_construction, "ef_search": ef_search}).items():
            check_positive_int(name, value)
        self.path, self.kind, self.precision = path, kind, precision
        self.rescore, self.rescore_multiplier = rescore, rescore_multiplier
        self.hnsw_m, self.ef_construction, self.ef_search = hnsw_m, ef_construction, ef_search
        self.nlist, self.nprobe = nlist, nprobe
        self._dtype = np.float32 if precision == "float32" else np.int8
        self._lock = threading.RLock()
        self._matches = MatchCache()
        self._store = None
        try:
            with self._lock, self._guard():
                self._store = self._open_store(path)
                self._forget()
                self._sync()
        except BaseException:
            if self._store is not None:
                self._store.close()
            raise

    def _settings(self) -> dict:
        return {"path": self.path, "kind": self.kind, "precision": self.precision}

    def _bytes_on_disk(self) -> int | None:
        return disk.size(self.path)

    stored_settings = staticmethod(stored_settings)  # {"kind": ..., "precision": ...} of a folder, or None

    # ----------------------------------------------------------------- the docstore
    def _open_store(self, path: str | None) -> DocStore:
        if path is not None:
            if os.path.exists(path) and not os.path.isdir(path):
                raise NotAnIndexError(sqlite_files.file_hint(path))
            if migrate_0_1.is_v1(path):
                migrate_0_1.migrate(path, self.dimension)
            if os.path.isdir(path) and os.listdir(path) and not os.path.exists(os.path.join(path, "docs.sqlite")):
                raise ValueError(f"{path!r} is not empty and holds no embedkit FAISS index (no docs.sqlite)")
            os.makedirs(path, exist_ok=True)
        file = None if path is None else os.path.join(path, "docs.sqlite")
        names = os.listdir(path) if path is not None else []
        held = any(segment_files.NAME.fullmatch(n) or segment_files.OLD_SNAPSHOT.fullmatch(n) for n in names)
        store = DocStore(file, expect_rows=held)
        try:
            config = store.config(dict(self.encoder_info, kind=self.kind, precision=self.precision))
            self.check_info(config, f"FAISS index at {path!r}")
            if (config["kind"], config["precision"]) != (self.kind, self.precision):
                raise ValueError(
                    f"FAISS index at {path!r} is kind={config['kind']!r}, precision={config['precision']!r}; "
                    f"it was opened as kind={self.kind!r}, precision={self.precision!r}"
                )
            where = f"FAISS index at {path!r}"
            if self.sparse.encoder is None or store.get_info("sparse") is not None:
                self.sparse.adopt(store.get_info("sparse"), store.count, where)
            else:  # the index starts keeping sparse vectors: decided under the write lock
                with store.write():
                    if record := self.sparse.adopt(store.get_info("sparse"), store.count, where):
                        store.sparse.create()
                        store.set_info("sparse", record)
        except BaseException:
            store.close()
            raise
        return store

    def _forget(self) -> None:
        """Drop the in-memory FAISS state; the next read maps the segments and rebuilds the tail."""
        self._segments = Segments(
            self.path, self.kind, self.precision, self.dimension, self._faiss_vectors, self._new_index
        )
        self._ranges = self._version = None
        self._matches.clear()

    def _sync(self) -> None:
        """Apply what other connections committed since this process last looked."""
        version = self._store.data_version()
        if version == self._version:
            return
        for attempt in range(3):
            try:
                with self._store.read():
                    self._catch_up(final=attempt == 2)
                break
            except segment_files.Moved:
                continue
        self._version = version

    def _catch_up(self, final: bool = True, own=None) -> None:
        """Bring the FAISS state up to the docstore (inside a transaction)."""
        if self._ranges is None and self.precision != "float32":
            self._ranges = self._load_ranges()
        self._segments.catch_up(self._store, final, own)

    def _load_ranges(self):
        ranges = self._store.get_info("ranges")
        if ranges is not None and np.shape(ranges) != (2, self.dimension):
            raise CorruptIndexError(f"{self._store.file}: the int8 ranges do not have shape (2, {self.dimension})")
        return None if ranges is None else np.asarray(ranges, dtype=np.float32)

    # ----------------------------------------------------------------- the FAISS structure
    def _new_index(self, kind: str, n: int):
        return structures.new_index(
            kind, self.precision, self.dimension, n, self.hnsw_m, self.ef_construction, self.nlist
        )

    def _faiss_vectors(self, codes: np.ndarray) -> np.ndarray:
        """What the FAISS structure holds for kept codes."""
        if self.precision == "ubinary":
            return np.packbits(self._decode(codes) > 0, axis=-1)
        return np.ascontiguousarray(codes, dtype=np.float32)

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        return codes if self.precision == "float32" else dequantize_int8(codes, self._ranges)

    # ----------------------------------------------------------------- writes
    def _write(self, rows) -> None:
        vectors = rows.vectors
        with self._lock:
            with self._store.write():
                if self._ranges is None and self.precision != "float32":
                    self._ranges = self._load_ranges()
                    if self._ranges is None:  # the first add of a new int8 index calibrates it
                        saved = getattr(self.encoder, "quantization_ranges", None)  # optional in the protocol
                        self._ranges = calibration_ranges(vectors, saved)
                        self._store.set_info("ranges", self._ranges.tolist())
                codes = vectors if self.precision == "float32" else quantize_embeddings(vectors, "int8", self._ranges)
                if rows.sparse is None and self._store.sparse.exist():  # recorded by another instance since
                    self.sparse.documents([], kept=True)
                self._store.kill(self._store.fids_of(rows.heads))  # with every chunk from before
                spans = [dump_span(s) for s in rows.spans]
                fids = self._store.insert(
                    rows.ids, rows.texts, rows.metadata_json, codes, docs=rows.docs, spans=spans, sparse=rows.sparse
                )
            self._apply((fids, codes))
            if self._segments.full():
                self._seal()

    def _delete(self, ids) -> int:
        return self._remove(lambda: self._store.fids_of(ids))

    def _delete_where(self, node, ids) -> int:
        return self._remove(lambda: self._store.fids_where(node, ids))

    def _update_metadata(self, ids, metadatas) -> None:
        """Re-insert the rows of every chunk under new fids with their codes as they are (every cache
        follows new fids)."""
        new = dict(zip(ids, metadatas))
        with self._lock:
            with self._store.write():
                rows = self._store.by_id(ids, chunks=True)
                missing = sorted(set(ids) - {r.id for r in rows})
                if missing:
                    raise UnknownIdsError(f"unknown ids: {missing[:5]}")
                codes = self._store.code_array([(r.fid, r.code) for r in rows], self._dtype, self.dimension)
                kept = self._store.sparse.vectors([r.fid for r in rows])
                self._store.kill(np.array([r.fid for r in rows], np.int64))
                metadatas = [new[r.doc or r.id] for r in rows]
                ids, texts, docs, spans = (
                    [r.id for r in rows],
                    [r.text for r in rows],
                    [r.doc for r in rows],
                    [r.span for r in rows],
                )
                sparse = None if kept is None else [kept[r.fid] for r in rows]
                self._store.insert(ids, texts, metadatas, codes, docs=docs, spans=spans, sparse=sparse)
            self._apply()

    def _remove(self, find) -> int:
        with self._lock:
            with self._store.write():
                fids = find()
                deleted = self._store.documents_among(fids)
                self._store.kill(fids)
            self._apply()
        return deleted

    def _seal(self) -> None:
        """Seal a full tail and merge (the write before is already durable: a failure here only keeps the
        tail in memory until the next save())."""
        try:
            self._segments.seal(self._store)
            self._segments.merge(self._store)
        except (OSError, RuntimeError) as exc:
            logger.warning("sealing a FAISS segment failed (%s); save() tries again", exc)
            self._forget()

    def _apply(self, own=None) -> None:
        """Bring the FAISS state up to what was just committed (the SQLite write lock is already
        released, so other writers go on meanwhile); ``own`` is the (fids, codes) this call inserted. If
        that fails, the state is dropped and rebuilt on the next call: the docstore already holds the write."""
        try:
            with self._store.read():
                self._catch_up(own=own)
        except BaseException:
            self._forget()
            raise

    def _translate(self, exc: Exception) -> Exception | None:
        return sqlite_files.translate(exc, ":memory:" if self.path is None else os.path.join(self.path, "docs.sqlite"))

    # ----------------------------------------------------------------- reads
    @guarded
    def __len__(self) -> int:
        self._check_open()
        with self._lock:
            return self._store.count()

    def _get(self, ids) -> list[Record]:
        with self._lock:
            rows = self._store.by_id(ids)
            metadatas = parse_metadatas(self._store.file, [r.id for r in rows], [r.metadata for r in rows])
        found = {r.id: Record(r.id, r.text, m) for r, m in zip(rows, metadatas)}
        return [found[i] for i in ids if i in found]

    def _keyword(self, queries, k, node, with_vectors) -> list[list[Hit]]:
        results = []
        with self._lock, self._store.read():
            for query in queries:
                found = self._store.keyword(query, node, k)
                records = self._store.records([fid for fid, _ in found], codes=with_vectors)
                results.append(self._hits([(f, s) for f, s in found if f in records], records, with_vectors))
        return results

    def _sparse(self, vector, k, node, with_vectors) -> list[Hit]:
        with self._lock, self._store.read():
            allowed = None if node is None else self._store.matching(node, None, np.zeros(0, np.int64))
            found = self._store.sparse.search(vector, k, allowed)
            records = self._store.records([fid for fid, _ in found], codes=with_vectors)
            found = [(f, s) for f, s in found if f in records]
            hits = self._hits(found, records, with_vectors)
            if with_vectors:  # the vector of the chunk that matched
                vectors = self._store.sparse.vectors([f for f, _ in found])
                for hit, (fid, _) in zip(hits, found):
                    hit.sparse_vector = as_dict(vectors[fid])
        return hits

    def _sparse_vectors(self, ids) -> dict[str, dict[int, float]]:
        with self._lock, self._store.read():
            fids = {r.fid: r.id for r in self._store.by_id(ids)}
            vectors = self._store.sparse.vectors(list(fids)) or {}
        return {fids[f]: as_dict(v) for f, v in vectors.items()}

    def _chunk_spans(self, ids) -> dict[str, list[tuple[int, int]]]:
        with self._lock, self._store.read():
            return spans_by_document(self._store.by_id(ids, chunks=True))

    def _select(self, node, ids, limit, offset, after=None) -> list[Record]:
        with self._lock:
            return [Record(*row) for row in self._store.select(node, ids, limit, offset, after)]

    def _vectors(self, ids) -> dict[str, np.ndarray]:
        with self._lock:
            rows = self._store.by_id(ids)
            if not rows:
                return {}
            codes = self._store.code_array([(r.fid, r.code) for r in rows], self._dtype, self.dimension)
            return dict(zip((r.id for r in rows), self._decode(codes)))

    # ----------------------------------------------------------------- segments and lifecycle
    @guarded
    def save(self, path: str | None = None, force: bool = False) -> str:
        """Seal the tail into a segment once it holds 20,000 rows (any, with ``force``) and merge segments
        by size tiers (every write is already durable). ``path`` copies the index to a new, empty folder,
        which this instance then uses."""
        self._check_open()
        with self._lock:
            if path is not None and (self.path is None or os.path.realpath(path) != os.path.realpath(self.path)):
                target = copy_to(self._store, path)  # the docstore copied to the new folder, used from now on
                self._store.close()
                self._store, self.path = target, path
                self._forget()
                force = True
            if self.path is None:
                raise ValueError("save() needs a path (none was given to FaissIndex)")
            if not self._store.read_only:  # else nothing was written, and nothing can be
                self._sync()
                self._segments.seal(self._store, force=force)
                self._segments.merge(self._store)
                self._segments.clean()
        return self.path

    @guarded
    def compact(self) -> None:
        """Seal the tail and merge every segment into one without the deleted rows: the fastest searches,
        at the cost of rebuilding every FAISS structure."""
        self._check_open()
        with self._lock:
            self._store.check_writable()
            self._sync()
            self._segments.seal(self._store, force=True)
            self._segments.merge(self._store, everything=True)
            self._segments.clean()
            with self._store.write():
                self._store.sparse.compact()

    def close(self) -> None:
        """Seal and merge as ``save()`` does, then release the docstore."""
        with self._lock:
            if self.closed:
                return
            try:
                if self.path is not None:
                    self.save()
            finally:
                self._store.close()
                super().close()
