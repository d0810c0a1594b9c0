"""Run a translated framework filter (``integrations.filters.bounds``): the store runs the upper bound,
and where the translation is not exact the framework's own evaluator (``matches``) finishes the job."""

from __future__ import annotations

from collections.abc import Callable

from integrations.filters.bounds import FALSE, TRUE, Bounds
from integrations.index import Index
from integrations.records import Record


def store_filter(bounds: Bounds | None) -> dict | None:
    """The embedkit filter the store runs (None for none); check ``matches_nothing`` first."""
    return None if bounds is None or bounds.upper == TRUE else bounds.upper


def matches_nothing(bounds: Bounds | None) -> bool:
    return bounds is not None and bounds.upper == FALSE


def select(
    index: Index, bounds: Bounds | None, matches: Callable[[Record], bool], include_vectors: bool = False
) -> list[Record]:
    """Every document the filter matches, in id order."""
    if matches_nothing(bounds):
        return []
    records = index.get(filter=store_filter(bounds), include_vectors=include_vectors)
    return records if bounds is None or bounds.exact else [r for r in records if matches(r)]


def search(run: Callable[[int, dict | None], list], k: int, bounds: Bounds | None, matches: Callable) -> list:
    """The ``k`` best hits that the filter matches; ``run(depth, filter)`` searches the store. Where the
    store alone cannot decide, it is asked ever deeper until ``k`` hits pass ``matches`` or none are left."""
    if matches_nothing(bounds):
        return []
    if bounds is None or bounds.exact:
        return run(k, store_filter(bounds))
    depth = max(4 * k, 64)
    while True:
        hits = run(depth, store_filter(bounds))
        kept = [h for h in hits if matches(h)]
        if len(kept) >= k or len(hits) < depth:
            return kept[:k]
        depth *= 4
