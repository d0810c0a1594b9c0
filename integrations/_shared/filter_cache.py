"""Which rows match a filter, kept in step with writes instead of re-running the filter on every search.

Evaluating a JSON filter in SQLite means parsing every row's metadata: about 50 ms per 100k rows. A
search that does that each time costs 100 times an HNSW search. So each store keeps the matching row
keys (FAISS ids or SQLite rowids) of its recent filters and brings them up to date by running the
filter only over the rows written since: rows with a key above the cached high-water mark, and the
keys its log says were removed or changed. Both are range scans on primary keys.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

State = tuple[int, int]  # (highest row key seen, position in the log of removed or changed keys)


@dataclass
class Match:
    keys: np.ndarray  # sorted int64 keys of the matching rows
    state: State
    derived: dict[str, Any] = field(default_factory=dict)  # what a backend builds from keys (a FAISS selector)


class MatchCache:
    def __init__(self, size: int = 32):
        self.size = size
        self._entries: OrderedDict[str, Match] = OrderedDict()

    def clear(self) -> None:
        self._entries.clear()

    def get(
        self,
        filter_key: str,
        state: State,
        run: Callable[[int | None, np.ndarray], np.ndarray],
        touched: Callable[[int], np.ndarray | None],
    ) -> Match:
        """The rows matching ``filter_key`` at ``state``.

        ``run(after, keys)`` returns the matching keys among rows with a key above ``after`` or in ``keys``
        (every row when ``after`` is None); ``touched(position)`` returns the keys removed or changed since
        that log position, or None when the store keeps no such log (the filter then runs afresh).
        """
        entry = self._entries.pop(filter_key, None)
        if entry is None or entry.state != state:
            changed = None if entry is None else touched(entry.state[1])
            if changed is None:
                entry = Match(np.unique(run(None, np.zeros(0, np.int64))), state)
            else:
                kept = entry.keys[~np.isin(entry.keys, changed)]
                entry = Match(np.union1d(kept, run(entry.state[0], changed)), state)
        self._entries[filter_key] = entry
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return entry
