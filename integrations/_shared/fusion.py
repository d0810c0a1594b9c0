"""Hybrid search: the vector and keyword legs run with the same filter, ``candidates`` deep (at least
``k``), and are fused by reciprocal rank fusion: a document's score is the sum over the legs that found it
of ``1 / (rrf_k + rank)``, ranks counted from 1. Each hit records its rank in each leg that found it.
"""

from __future__ import annotations

import dataclasses

MODES = ("vector", "keyword", "hybrid")


def fuse(legs: dict, k: int, rrf_k: int) -> list:
    """Reciprocal rank fusion of ranked lists of hits: the ``k`` best, each with its ranks per leg."""
    fused: dict = {}
    for leg, hits in legs.items():
        for rank, hit in enumerate(hits, 1):
            best = fused.setdefault(hit.id, dataclasses.replace(hit, score=0.0, ranks={}))
            best.ranks[leg] = rank
            best.score += 1.0 / (rrf_k + rank)
            if leg == "vector":
                best.span, best.vector = hit.span, hit.vector
    order = sorted(fused.values(), key=lambda h: (-h.score, min(h.ranks.values()), h.id))
    return order[:k]
