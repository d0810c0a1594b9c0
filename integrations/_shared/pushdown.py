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
    index: Index,
    bounds: Bounds | None,
    matches: Callable[[Record], bool],
    include_vectors: bool = False,
    ids: list[str] | None = None,
) -> list[Record]:
    """Every document the filter matches (among ``ids``, in their order, if given; else in id order)."""
    if matches_nothing(bounds):
        return []
    records = index.get(ids, filter=store_filter(bounds), include_vectors=include_vectors)
    return records if bounds is None or bounds.exact else [r for r in records if matches(r)]


def delete(index: Index, bounds: Bounds | None, matches: Callable[[Record], bool], ids: list[str] | None = None) -> int:
    """Delete the documents the filter matches (among ``ids`` if given; no filter and no ids: all of
    them); returns how many. An exact filter deletes in one statement."""
    if matches_nothing(bounds) or ids == []:
        return 0
    if bounds is None or bounds.exact:
        flt = store_filter(bounds)
        if flt is not None:
            return index.delete(ids, filter=flt)
        ids = [r.id for r in index] if ids is None else ids
    else:
        ids = [r.id for r in select(index, bounds, matches, ids=ids)]
    return index.delete(ids) if ids else 0


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
