"""Retrieval metrics, computed as BEIR/MTEB do (binary relevance from the qrels)."""

from __future__ import annotations

import math


def ndcg_at_10(ranked: list[str], relevant: dict[str, int]) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum(rel / math.log2(i + 2) for i, rel in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    hits = {d for d, r in relevant.items() if r > 0}
    return len(hits & set(ranked[:k])) / len(hits)
