"""Hybrid search: every leg an index has (vector, keyword and, with a sparse encoder, sparse) runs with the
same filter, ``candidates`` deep (at least ``k``), and the legs are fused by reciprocal rank fusion: a
document's score is the sum over the legs that found it of ``weight / (rrf_k + rank)``, ranks counted from
1, each leg's weight 1 unless ``weights`` says otherwise (``weights`` also picks the legs: a leg it leaves
out does not run). Each hit records its rank in each leg that found it.
"""

from __future__ import annotations

import dataclasses

from integrations.errors import InvalidInputError, WrongTypeError

MODES = ("vector", "keyword", "sparse", "hybrid")


def fuse(legs: dict, k: int, rrf_k: int, weights: dict[str, float] | None = None) -> list:
    """Reciprocal rank fusion of ranked lists of hits: the ``k`` best, each with its ranks per leg."""
    fused: dict = {}
    for leg, hits in legs.items():
        weight = 1.0 if weights is None else weights[leg]
        for rank, hit in enumerate(hits, 1):
            best = fused.setdefault(hit.id, dataclasses.replace(hit, score=0.0, ranks={}))
            best.ranks[leg] = rank
            best.score += weight / (rrf_k + rank)
            if leg == "vector":
                best.span, best.vector = hit.span, hit.vector
            if hit.sparse_vector is not None:
                best.sparse_vector = hit.sparse_vector
    order = sorted(fused.values(), key=lambda h: (-h.score, min(h.ranks.values()), h.id))
    return order[:k]


def legs(mode: str, weights, sparse) -> list[str]:
    """The legs a search runs: its mode's, or in hybrid mode those ``weights`` names (by default every leg
    the index has: the sparse one with a sparse encoder); a sparse leg needs the ``SparseLeg`` to have one."""
    chosen = _chosen(mode, weights, sparse.encoder is not None)
    if "sparse" in chosen:
        sparse.require()
    return chosen


def _chosen(mode: str, weights, has_sparse: bool) -> list[str]:
    if weights is None:
        if mode != "hybrid":
            return [mode]
        return ["vector", "keyword", "sparse"] if has_sparse else ["vector", "keyword"]
    if mode != "hybrid":
        raise InvalidInputError(f"weights apply to mode='hybrid', not {mode!r}")
    if not isinstance(weights, dict) or not weights:
        raise WrongTypeError(f"weights must be a non-empty dict of {{leg: weight}}, got {weights!r}")
    for leg, weight in weights.items():
        if leg not in MODES[:3]:
            raise InvalidInputError(f"weights name the leg {leg!r}; the legs are {MODES[:3]}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < float("inf"):
            raise InvalidInputError(f"the weight of {leg!r} must be a finite number >= 0, got {weight!r}")
    return list(weights)
