"""FaissIndex: an Index over a FAISS index, with a docstore beside it.

Kinds: ``flat`` (exact), ``hnsw`` and ``ivf``. Precisions: ``float32``; ``int8`` (per-dimension scalar
quantization); ``ubinary`` (a binary index searched by Hamming distance). With ``rescore`` (the default)
the quantized indexes fetch ``k × rescore_multiplier`` candidates and re-rank them with the int8 vectors
kept alongside.

``hnsw_m``/``ef_search`` tune HNSW; ``nlist`` (default about sqrt(n)) and ``nprobe`` (default
max(16, nlist / 3)) tune IVF, which is retrained as the index grows fourfold. IVF over binary codes
clusters poorly; prefer ``hnsw`` or ``flat`` for ``ubinary``.

Each document version gets a stable int64 FAISS id. Deletes and upserts tombstone the old id; the FAISS
index is rebuilt from the kept vectors once a quarter of it is dead, so it never disagrees with the
docstore. Filters are exact: when fewer than ``k`` candidates pass, the search falls back to an exact
scan over the matching documents. All operations hold one lock, so the index is thread-safe.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import threading

import faiss
import numpy as np

from embedkit.checks import check_positive_int
from embedkit.quantization import quantize_embeddings

from .filters import Node, matches
from .index import Hit, Index, Record, top_k

KINDS = ("flat", "hnsw", "ivf")
PRECISIONS = ("float32", "int8", "ubinary")
FILES = ("index.faiss", "store.npy", "fids.npy", "docs.sqlite", "meta.json")


class FaissIndex(Index):
    def __init__(
        self,
        encoder,
        path: str | None = None,
        kind: str = "flat",
        precision: str = "float32",
        rescore: bool = True,
        rescore_multiplier: int = 4,
        hnsw_m: int = 32,
        ef_search: int = 64,
        nlist: int | None = None,
        nprobe: int | None = None,
    ):
        super().__init__(encoder)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "ubinary" and self.dimension % 8:
            raise ValueError(f"ubinary needs a dimension divisible by 8, got {self.dimension}")
        check_positive_int("rescore_multiplier", rescore_multiplier)
        self.path, self.kind, self.precision = path, kind, precision
        self.rescore, self.rescore_multiplier = rescore, rescore_multiplier
        self.hnsw_m, self.ef_search, self.nlist, self.nprobe = hnsw_m, ef_search, nlist, nprobe
        self._lock = threading.RLock()
        self._reset()
        if path is not None and os.path.exists(os.path.join(path, "CURRENT")):
            self._load(path)
        elif path is not None and os.path.isdir(path) and os.listdir(path):
            raise ValueError(f"{path!r} is not empty and holds no embedkit FAISS index (no CURRENT file)")

    # ----------------------------------------------------------------- state
    def _reset(self) -> None:
        self._docs: dict[int, Record] = {}  # fid -> record
        self._fid_of: dict[str, int] = {}  # id -> fid
        self._row_of: dict[int, int] = {}  # fid -> row of the kept vectors
        dtype = np.float32 if self.precision == "float32" else np.int8
        self._set_rows(np.zeros((0, self.dimension), dtype=dtype), np.zeros(0, dtype=np.int64))
        self._dead = 0
        self._next_fid = 0
        self._ranges: np.ndarray | None = None
        self._trained_on = 0
        self._index = None
        self._base = None  # keeps the wrapped FAISS index alive

    def __len__(self) -> int:
        with self._lock:
            return len(self._docs)

    def _set_rows(self, store: np.ndarray, fids: np.ndarray) -> None:
        """The kept vectors and their fids (-1 once dead): views over buffers that grow by doubling."""
        self._store_buf, self._fids_buf = store, fids
        self._store, self._fids = store, fids

    def _append_rows(self, codes: np.ndarray, fids: np.ndarray) -> None:
        n, m = len(self._fids), len(fids)
        if n + m > len(self._fids_buf):
            capacity = max(n + m, 2 * len(self._fids_buf), 1024)
            store = np.empty((capacity, self.dimension), dtype=self._store.dtype)
            ids = np.empty(capacity, dtype=np.int64)
            store[:n], ids[:n] = self._store, self._fids
            self._store_buf, self._fids_buf = store, ids
        self._store_buf[n : n + m], self._fids_buf[n : n + m] = codes, fids
        self._store, self._fids = self._store_buf[: n + m], self._fids_buf[: n + m]

    # ----------------------------------------------------------------- vectors
    def _encode(self, vectors: np.ndarray) -> np.ndarray:
        """Vectors as kept alongside: float32, or int8 codes over the calibrated ranges."""
        if self.precision == "float32":
            return vectors.astype(np.float32)
        if self._ranges is None:
            self._ranges = _calibrate(self.encoder, vectors)
        return quantize_embeddings(vectors, "int8", ranges=self._ranges)

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        if self.precision == "float32":
            return codes
        start, step = self._start_step()
        return (codes.astype(np.float32) + 128.5) * step + start  # bucket centres

    def _start_step(self) -> tuple[np.ndarray, np.ndarray]:
        start = self._ranges[0]
        step = (self._ranges[1] - start) / 255
        return start, np.where(step == 0, 1, step)

    def _faiss_vectors(self, codes: np.ndarray) -> np.ndarray:
        """What the FAISS index holds for kept vectors ``codes``."""
        if self.precision == "ubinary":
            return np.packbits(self._decode(codes) > 0, axis=-1)
        return np.ascontiguousarray(codes, dtype=np.float32)

    # ----------------------------------------------------------------- the FAISS index
    def _new_index(self, n: int):
        d, ip = self.dimension, faiss.METRIC_INNER_PRODUCT
        nlist = self.nlist or max(1, min(int(np.sqrt(n)), n // 39 or 1))
        if self.precision == "ubinary":
            base = {
                "flat": lambda: faiss.IndexBinaryFlat(d),
                "hnsw": lambda: faiss.IndexBinaryHNSW(d, self.hnsw_m),
                "ivf": lambda: faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(d), d, nlist),
            }[self.kind]()
            return faiss.IndexBinaryIDMap2(base), base
        if self.precision == "int8":
            qt = faiss.ScalarQuantizer.QT_8bit_direct_signed
            base = {
                "flat": lambda: faiss.IndexScalarQuantizer(d, qt, ip),
                "hnsw": lambda: faiss.IndexHNSWSQ(d, qt, self.hnsw_m, ip),
                "ivf": lambda: faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(d), d, nlist, qt, ip),
            }[self.kind]()
        else:
            base = {
                "flat": lambda: faiss.IndexFlatIP(d),
                "hnsw": lambda: faiss.IndexHNSWFlat(d, self.hnsw_m, ip),
                "ivf": lambda: faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, ip),
            }[self.kind]()
        return faiss.IndexIDMap2(base), base

    def _rebuild(self) -> None:
        """Drop dead rows and rebuild the FAISS index (retraining IVF) from the kept vectors."""
        live = self._fids >= 0
        self._set_rows(self._store[live], self._fids[live])
        self._row_of = {int(f): r for r, f in enumerate(self._fids)}
        self._dead = 0
        self._index, self._base = self._new_index(len(self._fids))
        vectors = self._faiss_vectors(self._store)
        if self.kind == "ivf":
            self._base.cp.min_points_per_centroid = 1  # small corpora train a few centroids, quietly
        if not self._base.is_trained and len(vectors):
            self._base.train(vectors)
        self._trained_on = len(vectors)
        if len(vectors):
            self._index.add_with_ids(vectors, self._fids)

    def _add_to_index(self, codes: np.ndarray, fids: np.ndarray) -> None:
        total = len(self._fids)
        if (
            self._index is None
            or self._dead * 4 > total
            or (self.kind == "ivf" and total > 4 * max(self._trained_on, 39))
        ):
            self._rebuild()  # also covers the rows just appended
        else:
            self._index.add_with_ids(self._faiss_vectors(codes), fids)

    # ----------------------------------------------------------------- writes
    def _write(self, ids, texts, metadatas, vectors) -> None:
        with self._lock:
            codes = self._encode(vectors)
            fids = np.arange(self._next_fid, self._next_fid + len(ids), dtype=np.int64)
            for doc_id in ids:
                self._kill(self._fid_of.get(doc_id))
            start = len(self._fids)
            self._append_rows(codes, fids)
            for n, (fid, doc_id, text, metadata) in enumerate(zip(fids.tolist(), ids, texts, metadatas)):
                self._docs[fid] = Record(doc_id, text, metadata)
                self._fid_of[doc_id] = fid
                self._row_of[fid] = start + n
            self._next_fid += len(ids)
            self._add_to_index(codes, fids)

    def _kill(self, fid: int | None) -> None:
        if fid is None:
            return
        record = self._docs.pop(fid)
        del self._fid_of[record.id]
        self._fids[self._row_of.pop(fid)] = -1
        self._dead += 1

    def _delete(self, ids) -> int:
        with self._lock:
            fids = [self._fid_of[i] for i in dict.fromkeys(ids) if i in self._fid_of]
            for fid in fids:
                self._kill(fid)
            if fids and self._dead * 4 > len(self._fids):
                self._rebuild()
            return len(fids)

    # ----------------------------------------------------------------- reads
    def _get(self, ids) -> list[Record]:
        with self._lock:
            return [_copy(self._docs[self._fid_of[i]]) for i in ids if i in self._fid_of]

    def _vectors(self, ids) -> dict[str, np.ndarray]:
        with self._lock:
            present = [i for i in ids if i in self._fid_of]
            rows = [self._row_of[self._fid_of[i]] for i in present]
            return dict(zip(present, self._decode(self._store[rows]))) if present else {}

    def _search(self, vectors, k, node: Node | None) -> list[list[Hit]]:
        with self._lock:
            if not self._docs:
                return [[] for _ in vectors]
            allowed = None
            if node is not None:
                allowed = {fid for fid, rec in self._docs.items() if matches(node, rec.metadata)}
            want = min(k, len(self._docs) if allowed is None else len(allowed))
            results = []
            for q in vectors:
                hits = self._ann(q, k, allowed) if want else []
                if len(hits) < want:
                    hits = self._exact(q, k, allowed)
                results.append(hits)
            return results

    def _ann(self, q: np.ndarray, k: int, allowed: set[int] | None) -> list[Hit]:
        """Candidates from FAISS, over-fetched to survive tombstones, filters and rescoring."""
        total = self._index.ntotal
        selectivity = 1.0 if allowed is None else max(len(allowed), 1) / len(self._docs)
        rescore = self.precision != "float32" and self.rescore
        fetch = int(k * (self.rescore_multiplier if rescore else 1) / selectivity) + self._dead
        if self.kind != "flat" and fetch * 2 > total:
            return []  # a scan of most of the index: the exact path is cheaper and exact
        fetch = min(total, max(fetch, k))
        self._tune(fetch)
        if self.precision == "ubinary":
            distances, fids = self._index.search(np.packbits(q > 0)[None], fetch)
            scores = 1.0 - 2.0 * distances[0].astype(np.float32) / self.dimension
        else:
            query, scale, offset = self._faiss_query(q)
            scores, fids = self._index.search(query[None], fetch)
            scores = scores[0] / scale + offset
        keep = [
            (float(s), int(f))
            for s, f in zip(scores, fids[0])
            if f >= 0 and f in self._docs and (allowed is None or f in allowed)
        ]
        if rescore and keep:
            rows = [self._row_of[f] for _, f in keep]
            exact = self._decode(self._store[rows]) @ q
            keep = sorted(zip(exact.tolist(), (f for _, f in keep)), key=lambda t: -t[0])
        return [self._hit(f, s) for s, f in keep[:k]]

    def _faiss_query(self, q: np.ndarray) -> tuple[np.ndarray, float, float]:
        """(query, scale, offset) with FAISS score / scale + offset = q·vector.

        int8 indexes hold the raw codes c, and q·decode(c) = (q*step)·c + q·(128.5*step + start).
        FAISS also rounds the query to int8 for these codes, so it is scaled to fill that range; the
        approximate scores are then re-ranked exactly when ``rescore`` is on.
        """
        if self.precision != "int8":
            return q, 1.0, 0.0
        start, step = self._start_step()
        weighted = q * step
        scale = 127.0 / max(float(np.abs(weighted).max()), 1e-30)
        return (weighted * scale).astype(np.float32), scale, float(q @ (128.5 * step + start))

    def _tune(self, fetch: int) -> None:
        downcast = faiss.downcast_IndexBinary if self.precision == "ubinary" else faiss.downcast_index
        base = downcast(self._index.index)
        if self.kind == "hnsw":
            base.hnsw.efSearch = max(self.ef_search, fetch)
        elif self.kind == "ivf":
            base.nprobe = min(base.nlist, self.nprobe or max(16, base.nlist // 3))

    def _exact(self, q: np.ndarray, k: int, allowed: set[int] | None) -> list[Hit]:
        fids = np.fromiter(self._docs if allowed is None else allowed, dtype=np.int64)
        rows = np.fromiter((self._row_of[f] for f in fids), dtype=np.int64, count=len(fids))
        scores, idx = top_k(self._decode(self._store[rows]), q[None], k)
        return [self._hit(int(fids[i]), float(s)) for s, i in zip(scores[0], idx[0])]

    def _hit(self, fid: int, score: float) -> Hit:
        rec = _copy(self._docs[fid])
        return Hit(rec.id, rec.text, rec.metadata, score)

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | None = None) -> str:
        """Write the index atomically: a new generation folder, then the CURRENT pointer is swapped."""
        path = path or self.path
        if path is None:
            raise ValueError("save() needs a path (none was given to FaissIndex)")
        os.makedirs(path, exist_ok=True)
        with self._lock:
            if self._index is None:
                self._rebuild()
            tmp = tempfile.mkdtemp(prefix=".tmp-", dir=path)
            try:
                self._write_files(tmp)
                generation = f"gen-{self._next_fid:012d}-{os.urandom(4).hex()}"
                os.rename(tmp, os.path.join(path, generation))
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            pointer = os.path.join(path, "CURRENT.tmp")
            with open(pointer, "w") as f:
                f.write(generation)
                f.flush()
                os.fsync(f.fileno())
            os.replace(pointer, os.path.join(path, "CURRENT"))
            for name in os.listdir(path):
                if name.startswith("gen-") and name != generation:
                    shutil.rmtree(os.path.join(path, name), ignore_errors=True)
            self.path = path
        return path

    def _write_files(self, folder: str) -> None:
        if self.precision == "ubinary":
            faiss.write_index_binary(self._index, os.path.join(folder, "index.faiss"))
        else:
            faiss.write_index(self._index, os.path.join(folder, "index.faiss"))
        np.save(os.path.join(folder, "store.npy"), self._store, allow_pickle=False)
        np.save(os.path.join(folder, "fids.npy"), self._fids, allow_pickle=False)
        db = sqlite3.connect(os.path.join(folder, "docs.sqlite"))
        with db:
            db.execute(
                "CREATE TABLE docs (fid INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL,"
                " text TEXT NOT NULL, metadata TEXT NOT NULL)"
            )
            db.executemany(
                "INSERT INTO docs VALUES (?, ?, ?, ?)",
                ((fid, r.id, r.text, json.dumps(r.metadata)) for fid, r in self._docs.items()),
            )
        db.close()
        meta = dict(
            self.info,
            kind=self.kind,
            precision=self.precision,
            next_fid=self._next_fid,
            trained_on=self._trained_on,
            ranges=None if self._ranges is None else self._ranges.tolist(),
        )
        with open(os.path.join(folder, "meta.json"), "w") as f:
            json.dump(meta, f)

    def _load(self, path: str) -> None:
        try:
            with open(os.path.join(path, "CURRENT")) as f:
                folder = os.path.join(path, f.read().strip())
            missing = [name for name in FILES if not os.path.exists(os.path.join(folder, name))]
            if missing:
                raise ValueError(f"missing {missing}")
            with open(os.path.join(folder, "meta.json")) as f:
                meta = json.load(f)
        except (OSError, ValueError) as exc:
            raise ValueError(f"corrupt FAISS index at {path!r}: {exc}") from None
        self.check_info(meta, f"FAISS index at {path!r}")
        if (meta["kind"], meta["precision"]) != (self.kind, self.precision):
            raise ValueError(
                f"FAISS index at {path!r} is kind={meta['kind']!r}, precision={meta['precision']!r}; "
                f"it was opened as kind={self.kind!r}, precision={self.precision!r}"
            )
        try:
            read = faiss.read_index_binary if self.precision == "ubinary" else faiss.read_index
            index = read(os.path.join(folder, "index.faiss"))
            store = np.load(os.path.join(folder, "store.npy"), allow_pickle=False)
            fids = np.load(os.path.join(folder, "fids.npy"), allow_pickle=False)
            db = sqlite3.connect(f"file:{os.path.join(folder, 'docs.sqlite')}?mode=ro", uri=True)
            rows = db.execute("SELECT fid, id, text, metadata FROM docs").fetchall()
            db.close()
        except Exception as exc:  # noqa: BLE001 - faiss raises RuntimeError, numpy ValueError, sqlite DatabaseError
            raise ValueError(f"corrupt FAISS index at {path!r}: {type(exc).__name__}: {exc}") from None
        live = set(fids[fids >= 0].tolist())
        if store.shape != (len(fids), self.dimension) or {r[0] for r in rows} != live or index.ntotal != len(fids):
            raise ValueError(f"corrupt FAISS index at {path!r}: the vectors, ids and docstore disagree")
        self._index = index
        self._set_rows(store, fids)
        self._row_of = {int(f): r for r, f in enumerate(fids) if f >= 0}
        self._docs = {fid: Record(i, text, json.loads(md)) for fid, i, text, md in rows}
        self._fid_of = {r.id: fid for fid, r in self._docs.items()}
        self._next_fid, self._trained_on = meta["next_fid"], meta["trained_on"]
        self._dead = int((fids < 0).sum())
        self._ranges = None if meta["ranges"] is None else np.asarray(meta["ranges"], dtype=np.float32)


def _copy(record: Record) -> Record:
    return Record(record.id, record.text, json.loads(json.dumps(record.metadata)))


def _calibrate(encoder, vectors: np.ndarray) -> np.ndarray:
    """int8 ranges: the model's saved ranges, else the first batch's (with a margin) if it is large, else [-1, 1]."""
    saved = getattr(encoder, "quantization_ranges", None)
    d = vectors.shape[1]
    if saved is not None and np.shape(saved) == (2, d):
        return np.asarray(saved, dtype=np.float32)
    if len(vectors) >= 100:
        lo, hi = vectors.min(axis=0), vectors.max(axis=0)
        margin = 0.1 * (hi - lo)
        return np.vstack([np.maximum(lo - margin, -1), np.minimum(hi + margin, 1)]).astype(np.float32)
    return np.vstack([-np.ones(d), np.ones(d)]).astype(np.float32)
