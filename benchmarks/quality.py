"""STS Benchmark Spearman of an embedkit model, to compare with the published score.

python benchmarks/quality.py --data ../shared/data [--model all-MiniLM-L6-v2]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
from scipy.stats import pearsonr, spearmanr

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from data import sts_test  # noqa: E402

from embedkit import SentenceTransformer  # noqa: E402


def sts_scores(model, data: str, batch_size: int = 64) -> tuple[float, float]:
    """(Spearman, Pearson) between cosine similarity and the gold scores."""
    s1, s2, gold = sts_test(data)
    e1 = model.encode(s1, batch_size=batch_size, normalize_embeddings=True)
    e2 = model.encode(s2, batch_size=batch_size, normalize_embeddings=True)
    cos = np.sum(e1 * e2, axis=1)
    return float(spearmanr(cos, gold).statistic), float(pearsonr(cos, gold).statistic)


def published(data: str) -> float | None:
    path = pathlib.Path(data) / "reference_scores" / "STSBenchmark.json"
    try:
        return json.loads(path.read_text())["scores"]["test"][0]["cosine_spearman"]
    except (OSError, KeyError, IndexError, ValueError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    model = SentenceTransformer(args.model, device=args.device)
    spearman, pearson = sts_scores(model, args.data)
    ref = published(args.data)
    print(f"STS Benchmark test ({args.model}): Spearman {spearman:.4f}  Pearson {pearson:.4f}")
    if ref is not None:
        print(f"published Spearman {ref:.4f}  difference {spearman - ref:+.4f}")


if __name__ == "__main__":
    main()
