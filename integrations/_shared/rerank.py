"""The rerank stage of ``Index.search``: the first stage (vector, keyword or hybrid, filtered) fetches
``rerank_candidates`` documents, a reranker scores ``(query, hit.passage)`` (a chunked document's best
chunk), and the ``k`` best come back in the reranker's order. ``hit.score`` becomes the rerank score; the
first stage's score stays in ``hit.scores`` and each stage's rank in ``hit.ranks`` (``"rerank"`` too).

A reranker is a CrossEncoder (embedkit's or sentence-transformers', one label) or any callable
``(query, passages) -> scores``, one number per passage, higher is better.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

from integrations._shared.validation import check_positive_int
from integrations.errors import InvalidInputError, RerankError, WrongTypeError


def scorer(rerank, rerank_candidates: int, k: int) -> Callable[[str, list[str]], list[float]]:
    """``rerank`` as a function of (query, passages), after checking it and ``rerank_candidates``."""
    check_positive_int("rerank_candidates", rerank_candidates)
    if rerank_candidates < k:
        raise InvalidInputError(
            f"rerank_candidates={rerank_candidates} is less than k={k}: the reranker would see too few"
        )
    if hasattr(rerank, "predict"):
        labels = getattr(rerank, "num_labels", 1)
        if labels != 1:
            raise RerankError(f"a reranker gives one score per pair; this CrossEncoder has {labels} labels")
        return lambda query, passages: rerank.predict([(query, p) for p in passages], show_progress_bar=False)
    if callable(rerank):
        return rerank
    raise WrongTypeError(
        f"rerank must be a CrossEncoder or a callable (query, passages) -> scores, got {type(rerank).__name__}"
    )


def scores_of(score: Callable, query: str, passages: list[str]) -> list[float]:
    """``score(query, passages)`` as floats, one finite number per passage, or a ValueError saying what is wrong."""
    scores = score(query, passages)
    scores = [float(s) for s in (scores.tolist() if hasattr(scores, "tolist") else scores)]
    if len(scores) != len(passages):
        raise RerankError(f"the reranker gave {len(scores)} scores for {len(passages)} passages")
    bad = next((i for i, s in enumerate(scores) if not math.isfinite(s)), None)
    if bad is not None:
        raise RerankError(f"the reranker gave a score of {scores[bad]} for the passage at index {bad}")
    return scores


def rerank_hits(score: Callable, query: str, hits: list, k: int, stage: str) -> list:
    """The ``k`` best of ``hits`` by ``score``, ties kept in the first stage's order."""
    if not hits:
        return []
    scores = scores_of(score, query, [hit.passage for hit in hits])
    order = sorted(range(len(hits)), key=lambda i: -scores[i])[:k]
    out = []
    for rank, i in enumerate(order, 1):
        hit = hits[i]
        ranks = dict(hit.ranks or {})
        ranks.setdefault(stage, i + 1)
        out.append(
            dataclasses.replace(
                hit, score=scores[i], ranks={**ranks, "rerank": rank}, scores={stage: hit.score, "rerank": scores[i]}
            )
        )
    return out
