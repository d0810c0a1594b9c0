"""Quality of an embedkit model against published scores: STS Benchmark Spearman, and optionally
SciFact nDCG@10 (all 5,183 documents; minutes on a CPU).

    python benchmarks/quality.py --data ../shared/data [--model all-MiniLM-L6-v2] [--backend onnx] [--scifact]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
from scipy.stats import pearsonr, spearmanr

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from data import scifact, sts_test  # noqa: E402
from metrics import ndcg_at_10  # noqa: E402

from embedkit import SentenceTransformer  # noqa: E402


def sts_scores(model, data: str, batch_size: int = 64) -> tuple[float, float]:
    """(Spearman, Pearson) between cosine similarity and the gold scores."""
    s1, s2, gold = sts_test(data)
    e1 = model.encode(s1, batch_size=batch_size, normalize_embeddings=True)
    e2 = model.encode(s2, batch_size=batch_size, normalize_embeddings=True)
    cos = np.sum(e1 * e2, axis=1)
    return float(spearmanr(cos, gold).statistic), float(pearsonr(cos, gold).statistic)


def scifact_ndcg(model, data: str, batch_size: int = 64) -> float:
    corpus, queries, qrels = scifact(data)
    doc_ids = list(corpus)
    docs = model.encode_document([corpus[d] for d in doc_ids], batch_size=batch_size, normalize_embeddings=True)
    qids = list(queries)
    q = model.encode_query([queries[i] for i in qids], batch_size=batch_size, normalize_embeddings=True)
    top = np.argsort(-(q @ docs.T), axis=1)[:, :10]
    return float(np.mean([ndcg_at_10([doc_ids[j] for j in row], qrels[i]) for row, i in zip(top, qids)]))


def published(data: str, task: str, key: str) -> float | None:
    try:
        scores = json.loads((pathlib.Path(data) / "reference_scores" / f"{task}.json").read_text())["scores"]["test"]
        return scores[0][key]
    except (OSError, KeyError, IndexError, ValueError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--device", default=None)
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    parser.add_argument("--scifact", action="store_true", help="also SciFact nDCG@10 (published 0.64508)")
    args = parser.parse_args()
    model = SentenceTransformer(args.model, device=args.device, backend=args.backend)
    spearman, pearson = sts_scores(model, args.data)
    ref = published(args.data, "STSBenchmark", "cosine_spearman")
    print(f"STS Benchmark test ({args.model}, {args.backend}): Spearman {spearman:.4f}  Pearson {pearson:.4f}")
    if ref is not None:
        print(f"  published Spearman {ref:.4f}  difference {spearman - ref:+.4f}")
    if args.scifact:
        ndcg = scifact_ndcg(model, args.data)
        ref = published(args.data, "SciFact", "ndcg_at_10")
        print(f"SciFact nDCG@10 ({args.backend}): {ndcg:.4f}" + (f"  published {ref:.4f}" if ref is not None else ""))


if __name__ == "__main__":
    main()
