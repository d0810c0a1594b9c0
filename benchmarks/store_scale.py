"""Stores at scale: what each operation costs at 100k, 1M (and 10M) documents, and how it grows.

    python benchmarks/store_scale.py --sizes 100000 1000000 [--systems faiss-flat faiss-10m sqlite ...]

Synthetic clustered 384-d unit vectors (100 clusters), generated in batches of 5,000 so that no process
holds them all; each document has a text of 12 words from a 5,000-word vocabulary and the metadata
``{"group": i % 100, "bucket": i % 1000}``. Every system runs alone, one after another, each step in its
own process:

1. **ingest** (a forked process): ``add_embeddings`` in batches of 5,000, then ``save()`` and ``close()``
   (the finish step is included); vectors/s, with the CPU seconds beside the wall time, and its ratio to
   the **floor**: the same rows written into a fresh SQLite file with an FTS5 index and the vectors
   appended to a plain file, one transaction a batch. Only the time spent in the system's calls counts
   (``Clock``): making the batches is not ingest.
2. **reopen** (three fresh processes, each a new interpreter; the median is reported): from the open call
   to the first answer, with **open** (up to the open call's return) beside it. The first of them then
   runs 20 searches and reports its RSS, then p50/p95 of unfiltered searches, recall@10 against an exact
   search, the first use of never-seen 1% filters (``group == 7``, ``8``, ``9``: median), filtered p50 at
   1% and 70% (``group < 70``), a keyword query beside the same FTS5 query run by hand on the same file,
   and a hybrid search.
3. **changes** (one more fresh process): add 1,000 + ``save()`` (median of 3), delete 10%, ``close()``.

Anchors in the same run: raw faiss (a flat index, and an IVF int8 one probed as the ten-million
configuration is, written with ``write_index`` and read back with ``read_index``; filters as a numpy mask
and an ID selector) and, where installed, LanceDB. A growth table (largest size over smallest) closes the
report; ``--out FILE`` also writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import sqlite3
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

DIM, K, QUERIES, BATCH, VOCABULARY = 384, 10, 200, 5000, 5000
NPROBE = 32  # IVF lists probed per segment in the ten-million configuration (and raw faiss IVF beside it)
CENTERS = np.random.default_rng(0).normal(size=(100, DIM)).astype(np.float32)
STORES = {
    "faiss-flat": {"kind": "flat", "precision": "float32"},
    "faiss-10m": {"kind": "ivf", "precision": "int8", "nprobe": NPROBE},  # the ten-million configuration
    "sqlite": None,
}
ANCHORS = ("floor", "raw-flat", "raw-ivf", "lancedb")


# ----------------------------------------------------------------- data


def batch(b: int) -> tuple[np.ndarray, list[str], list[str], list[dict]]:
    """Batch ``b`` (rows b*5000 ..): vectors, ids, texts, metadata; the same in every process."""
    rng = np.random.default_rng([1, b])
    x = CENTERS[rng.integers(0, 100, BATCH)] + 0.6 * rng.standard_normal((BATCH, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    words = rng.integers(0, VOCABULARY, (BATCH, 12))
    rows = range(b * BATCH, (b + 1) * BATCH)
    texts = [f"document {i} " + " ".join(f"w{w}" for w in ws) for i, ws in zip(rows, words.tolist())]
    return x, [str(i) for i in rows], texts, [{"group": i % 100, "bucket": i % 1000} for i in rows]


def queries() -> np.ndarray:
    rng = np.random.default_rng(2)
    q = CENTERS[rng.integers(0, 100, QUERIES)] + 0.6 * rng.normal(size=(QUERIES, DIM)).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def truth(n: int, q: np.ndarray) -> np.ndarray:
    """The exact top 10 ids of each query, computed batch by batch."""
    best_s, best_i = np.full((len(q), K), -np.inf, np.float32), np.zeros((len(q), K), np.int64)
    for b in range(n // BATCH):
        scores = q @ batch(b)[0].T
        s = np.concatenate([best_s, scores], axis=1)
        i = np.concatenate([best_i, np.arange(b * BATCH, (b + 1) * BATCH)[None].repeat(len(q), 0)], axis=1)
        top = np.argpartition(-s, K, axis=1)[:, :K]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    return best_i


def recall(found: list[list[int]], exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t.tolist())) / K for f, t in zip(found, exact)]))


# ----------------------------------------------------------------- measuring


class VectorsOnly:
    """An encoder stand-in: the benchmark passes vectors, never texts to embed."""

    model_name = "synthetic"
    prompts: dict[str, str] = {}

    def get_embedding_dimension(self) -> int:
        return DIM

    lookup: dict[str, np.ndarray] = {}  # query text -> its vector, for hybrid searches

    def encode_query(self, texts, **kw):
        return np.stack([self.lookup[t] for t in texts])

    def encode_document(self, texts, **kw):
        raise NotImplementedError


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def disk_mb(path: str) -> float:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs) / 2**20


def timed(fn, repeat: int) -> tuple[float, float, list]:
    """(p50 ms, p95 ms, results)."""
    times, out = [], []
    for i in range(repeat):
        t = time.perf_counter()
        out.append(fn(i))
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95)), out


def open_store(system: str, where: str):
    from integrations import FaissIndex, SQLIndex

    if system == "sqlite":
        return SQLIndex(VectorsOnly(), f"sqlite:///{where}/bench.db")
    return FaissIndex(VectorsOnly(), path=f"{where}/idx", **STORES[system])


# ----------------------------------------------------------------- embedkit stores


class Clock:
    """Wall and CPU time spent inside ``with clock:`` only: the batches are made outside it, so an ingest
    figure is the store's own time (making 5,000 rows costs about 50 ms, a tenth of writing them)."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def __enter__(self):
        self.started = time.perf_counter(), cpu_s()

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self.started[0]
        self.cpu += cpu_s() - self.started[1]

    def figures(self, n: int, where: str) -> dict:
        return {"ingest/s": n / self.wall, "ingest cpu": self.cpu, "disk": disk_mb(where)}


def ingest(system: str, n: int, where: str) -> dict:
    clock = Clock()
    with clock:
        index = open_store(system, where)
    for b in range(n // BATCH):
        x, ids, texts, metas = batch(b)
        with clock:
            index.add_embeddings(x, texts, metas, ids)
    with clock:
        index.save()
        index.close()
    return clock.figures(n, where)


def probe(system: str, where: str, q: np.ndarray, full: bool) -> dict:
    """In a fresh interpreter: reopen up to the first answer; with ``full``, the read figures too."""
    import integrations.faiss  # noqa: F401 - imports are not part of reopening
    import integrations.sql  # noqa: F401

    t = time.perf_counter()
    index = open_store(system, where)
    opened = time.perf_counter() - t
    index.search_by_vector(q[0], k=K)
    out = {"reopen": time.perf_counter() - t, "open": opened}
    if not full:
        return out
    for i in range(20):
        index.search_by_vector(q[i], k=K)
    out["rss"] = rss_mb()
    out["p50"], out["p95"], found = timed(lambda i: index.search_by_vector(q[i % QUERIES], k=K), QUERIES)
    out["found"] = [[int(h.id) for h in hits] for hits in found]
    firsts = []
    for group in (7, 8, 9):
        t = time.perf_counter()
        index.search_by_vector(q[group], k=K, filter={"group": group})
        firsts.append((time.perf_counter() - t) * 1e3)
    out["new filter"] = float(np.median(firsts))
    for label, flt in {"filt1%": {"group": 7}, "filt70%": {"group": {"$lt": 70}}}.items():
        out[label] = timed(lambda i: index.search_by_vector(q[i % QUERIES], k=K, filter=flt), 50)[0]
    words = [f"w{i * 7} w{i * 13}" for i in range(50)]
    out["keyword"] = timed(lambda i: index.search(words[i], k=K, mode="keyword"), 50)[0]
    out["keyword raw"] = raw_keyword(system, where, words)
    VectorsOnly.lookup = dict(zip(words, q))
    out["hybrid"] = timed(lambda i: index.search(words[i], k=K, mode="hybrid"), 50)[0]
    legs = [timed(lambda i: index.search(words[i], k=100, mode=mode), 50)[0] for mode in ("vector", "keyword")]
    out["hybrid/legs"] = out["hybrid"] / sum(legs)
    index.close()
    return out


def raw_keyword(system: str, where: str, words: list[str]) -> float:
    """p50 of the same FTS5 query by hand: the best 10 by bm25 with their id, text and metadata."""
    if system == "sqlite":
        db = sqlite3.connect(f"{where}/bench.db")
        sql = (
            "SELECT d.id, d.text, d.metadata, bm25(embedkit_fts_documents) FROM embedkit_fts_documents "
            "JOIN documents d ON d.rowid = embedkit_fts_documents.rowid WHERE embedkit_fts_documents MATCH ? "
            "ORDER BY bm25(embedkit_fts_documents) LIMIT 10"
        )
    else:
        db = sqlite3.connect(f"{where}/idx/docs.sqlite")
        sql = (
            "SELECT d.id, b.text, d.metadata, bm25(fts) FROM fts JOIN docs d ON d.fid = fts.rowid "
            "JOIN bodies b ON b.fid = fts.rowid WHERE fts MATCH ? ORDER BY bm25(fts) LIMIT 10"
        )
    match = [" OR ".join(f'"{w}"' for w in text.split()) for text in words]
    p50 = timed(lambda i: db.execute(sql, (match[i],)).fetchall(), 50)[0]
    db.close()
    return p50


def changes(system: str, where: str, n: int) -> dict:
    index = open_store(system, where)
    extra = batch(n // BATCH + 1)
    rounds = []
    for r in range(3):
        t = time.perf_counter()
        lo = r * 1000
        index.add_embeddings(extra[0][lo : lo + 1000], extra[2][lo : lo + 1000], extra[3][lo : lo + 1000],
                             extra[1][lo : lo + 1000])  # fmt: skip
        index.save()
        rounds.append(time.perf_counter() - t)
    t = time.perf_counter()
    index.delete([str(i) for i in range(0, n, 10)])
    delete = time.perf_counter() - t
    t = time.perf_counter()
    index.close()
    return {"add 1k+save": float(np.median(rounds)), "delete 10%": delete, "close": time.perf_counter() - t}


# ----------------------------------------------------------------- anchors


def floor(n: int, where: str) -> dict:
    """The same rows into a fresh SQLite file with an FTS5 index, the vectors appended to a plain file."""
    clock = Clock()
    with clock:
        db = sqlite3.connect(f"{where}/floor.db", isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("CREATE TABLE docs (rowid INTEGER PRIMARY KEY, id TEXT UNIQUE, text TEXT, metadata TEXT)")
        db.execute("CREATE VIRTUAL TABLE fts USING fts5(text, content='docs', content_rowid='rowid')")
        vectors = open(f"{where}/vectors.f32", "ab")
    for b in range(n // BATCH):
        x, ids, texts, metas = batch(b)
        with clock:
            db.execute("BEGIN")
            rows = [(b * BATCH + j, i, tx, json.dumps(m)) for j, (i, tx, m) in enumerate(zip(ids, texts, metas))]
            db.executemany("INSERT INTO docs VALUES (?, ?, ?, ?)", rows)
            db.executemany("INSERT INTO fts (rowid, text) VALUES (?, ?)", [(r[0], r[2]) for r in rows])
            vectors.write(x.tobytes())
            vectors.flush()
            os.fsync(vectors.fileno())
            db.execute("COMMIT")
    with clock:
        vectors.close()
        db.close()
    return clock.figures(n, where)


def raw_faiss_ingest(kind: str, n: int, where: str) -> dict:
    import faiss

    clock = Clock()
    if kind == "ivf":
        nlist = int(np.sqrt(n))
        qt = faiss.ScalarQuantizer.QT_8bit
        sample = np.concatenate([batch(b)[0] for b in range(min(n // BATCH, max(1, 64 * nlist // BATCH)))])
        with clock:
            index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(DIM), DIM, nlist, qt, faiss.METRIC_INNER_PRODUCT)
            index.train(sample)
    else:
        index = faiss.IndexFlatIP(DIM)
    for b in range(n // BATCH):
        x = batch(b)[0]
        with clock:
            index.add(x)
    with clock:
        faiss.write_index(index, f"{where}/raw.faiss")
    return clock.figures(n, where)


def raw_faiss_probe(kind: str, where: str, q: np.ndarray, full: bool) -> dict:
    import faiss

    t = time.perf_counter()
    index = faiss.read_index(f"{where}/raw.faiss")
    opened = time.perf_counter() - t
    params = faiss.SearchParametersIVF(nprobe=NPROBE) if kind == "ivf" else None
    index.search(q[:1], K, params=params)
    out = {"reopen": time.perf_counter() - t, "open": opened}
    if not full:
        return out
    out["rss"] = rss_mb()
    out["p50"], out["p95"], found = timed(lambda i: index.search(q[i % QUERIES][None], K, params=params), QUERIES)
    out["found"] = [f[1][0].tolist() for f in found]

    def filtered(i, group):
        mask = np.arange(index.ntotal) % 100 == group if group is not None else np.arange(index.ntotal) % 100 < 70
        bits = np.packbits(mask, bitorder="little")
        sel = faiss.IDSelectorBitmap(index.ntotal, faiss.swig_ptr(bits))
        sp = (
            faiss.SearchParametersIVF(sel=sel, nprobe=params.nprobe)
            if kind == "ivf"
            else faiss.SearchParameters(sel=sel)
        )
        return index.search(q[i % QUERIES][None], K, params=sp)

    out["new filter"] = timed(lambda i: filtered(i, 7 + i), 3)[0]
    out["filt1%"] = timed(lambda i: filtered(i, 7), 50)[0]
    out["filt70%"] = timed(lambda i: filtered(i, None), 50)[0]
    return out


def lancedb_ingest(n: int, where: str) -> dict:
    import lancedb
    import pyarrow as pa

    clock = Clock()
    with clock:
        db = lancedb.connect(f"{where}/lance")
    table = None
    for b in range(n // BATCH):
        x, ids, texts, metas = batch(b)
        with clock:
            data = pa.table({
                "id": ids, "text": texts, "group": [m["group"] for m in metas],
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), DIM),
            })  # fmt: skip
            table = db.create_table("docs", data) if table is None else table
            if b:
                table.add(data)
    return clock.figures(n, where)


def lancedb_probe(where: str, q: np.ndarray, full: bool) -> dict:
    import lancedb

    t = time.perf_counter()
    table = lancedb.connect(f"{where}/lance").open_table("docs")
    opened = time.perf_counter() - t

    def search(i, where_sql=None):
        query = table.search(q[i % QUERIES]).metric("dot").limit(K)
        return (query.where(where_sql, prefilter=True) if where_sql else query).to_list()

    search(0)
    out = {"reopen": time.perf_counter() - t, "open": opened}
    if not full:
        return out
    out["rss"] = rss_mb()
    out["p50"], out["p95"], found = timed(search, QUERIES)
    out["found"] = [[int(r["id"]) for r in rows] for rows in found]
    out["new filter"] = timed(lambda i: search(i, f"`group` = {7 + i}"), 3)[0]
    out["filt1%"] = timed(lambda i: search(i, "`group` = 7"), 50)[0]
    out["filt70%"] = timed(lambda i: search(i, "`group` < 70"), 50)[0]
    return out


# ----------------------------------------------------------------- driver


def fresh(fn, *args):
    """Run ``fn`` in a new interpreter (nothing imported or cached from earlier steps)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def forked(fn, *args):
    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(fn, args)


def run(system: str, n: int, q: np.ndarray, exact: np.ndarray) -> dict:
    where = tempfile.mkdtemp(dir=os.environ.get("BENCH_DIR"))
    try:
        if system in STORES:
            out = forked(ingest, system, n, where)
            probes = [fresh(probe, system, where, q, i == 0) for i in range(3)]
        elif system == "floor":
            return forked(floor, n, where)
        elif system == "lancedb":
            out = forked(lancedb_ingest, n, where)
            probes = [fresh(lancedb_probe, where, q, i == 0) for i in range(3)]
        else:
            kind = system.split("-")[1]
            out = forked(raw_faiss_ingest, kind, n, where)
            probes = [fresh(raw_faiss_probe, kind, where, q, i == 0) for i in range(3)]
        out.update(probes[0], **{key: float(np.median([p[key] for p in probes])) for key in ("reopen", "open")})
        out["recall"] = recall(out.pop("found"), exact)
        if system in STORES:
            out.update(fresh(changes, system, where, n))
        return out
    finally:
        shutil.rmtree(where, ignore_errors=True)


COLUMNS = [
    ("ingest/s", "{:,.0f}"), ("x floor", "{:.2f}"), ("ingest cpu", "{:,.0f}"), ("reopen", "{:.2f}"), ("open", "{:.3f}"),
    ("add 1k+save", "{:.3f}"), ("new filter", "{:.1f}"), ("rss", "{:,.0f}"), ("disk", "{:,.0f}"),
    ("p50", "{:.2f}"), ("p95", "{:.2f}"), ("filt1%", "{:.2f}"), ("filt70%", "{:.2f}"), ("keyword", "{:.2f}"),
    ("keyword raw", "{:.2f}"), ("hybrid", "{:.2f}"), ("hybrid/legs", "{:.2f}"), ("recall", "{:.3f}"),
    ("delete 10%", "{:.2f}"), ("close", "{:.2f}"),
]  # fmt: skip
GROWTH = ["reopen", "open", "add 1k+save", "new filter", "rss", "p50", "filt1%", "ingest/s"]


def report(n: int, rows: dict[str, dict]) -> None:
    print(f"\n### n = {n:,} (times in s, searches in ms, rss/disk in MB, ingest cpu in CPU-seconds)")
    print("| system | " + " | ".join(c for c, _ in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, row in rows.items():
        if "floor" in rows and name != "floor":
            row["x floor"] = rows["floor"]["ingest/s"] / row["ingest/s"]
        print(f"| {name} | " + " | ".join(fmt.format(row[c]) if c in row else "" for c, fmt in COLUMNS) + " |")
    anchors = {"faiss-flat": "raw-flat", "faiss-10m": "raw-ivf"}
    for ours, raw in anchors.items():
        if ours in rows and raw in rows:
            a, b = rows[ours], rows[raw]
            print(f"- {ours}: p50 {a['p50'] / b['p50']:.2f}x {raw}, reopen {a['reopen'] / b['reopen']:.2f}x")


def growth(results: dict[int, dict[str, dict]]) -> None:
    small, large = min(results), max(results)
    print(f"\n### growth from {small:,} to {large:,} ({large // small}x the rows)")
    print("| system | " + " | ".join(GROWTH) + " |")
    print("|---" * (len(GROWTH) + 1) + "|")
    for name in results[large]:
        a, b = results[small].get(name, {}), results[large][name]
        cells = [f"{b[c] / a[c]:.2f}x" if c in a and c in b and a[c] else "" for c in GROWTH]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--systems", nargs="+", default=[*ANCHORS, *STORES], choices=[*ANCHORS, *STORES])
    parser.add_argument("--out", help="also write every figure to this JSON file")
    args = parser.parse_args()
    systems = list(args.systems)
    if "lancedb" in systems:
        try:
            import lancedb  # noqa: F401
        except ImportError:
            print("(LanceDB is not installed: skipped)")
            systems.remove("lancedb")
    q, results = queries(), {}
    for n in sorted(args.sizes):
        n -= n % BATCH
        exact = truth(n, q)
        results[n] = {}
        for system in systems:
            results[n][system] = run(system, n, q, exact)
            print(f"  {n:,} {system}: {json.dumps(results[n][system])}", flush=True)
        report(n, results[n])
        if args.out:
            with open(args.out, "w") as f:
                json.dump({str(k): v for k, v in results.items()}, f, indent=1)
    if len(results) > 1:
        growth(results)


if __name__ == "__main__":
    main()
