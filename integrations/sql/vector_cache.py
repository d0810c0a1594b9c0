"""The matrix that SQLIndex searches exactly when the database cannot (SQLite, or PostgreSQL without
pgvector).

On SQLite the cache follows the table instead of reloading it: rows are known by rowid, kept sorted,
and each refresh reads only the rows above the highest rowid seen plus the rowids that triggers logged
as updated or deleted since (``embedkit_log``). A write of 10 rows costs reading 10 rows. Deleted rows
stay in the matrix, masked, until they are more than half of it. Under the rows held in memory lie the
table's mapped segments (``beneath``, see ``integrations.sql.segments``), each a read-only VectorCache of
its own; a search covers all of them, and a row that changed is masked in each.
"""

from __future__ import annotations

import numpy as np

from integrations._shared.exact import top_k
from integrations.errors import CorruptIndexError


class VectorCache:
    def __init__(self, dimension: int, where: str):
        self.dimension, self.where = dimension, where
        self.state: tuple[int, int] | None = None  # (highest rowid seen, last log seq applied)
        self.version: int | None = None  # PostgreSQL without pgvector: the table version it was loaded at
        self.keys = np.zeros(0, np.int64)  # sorted rowids (or positions), dead ones included
        self.matrix = np.zeros((0, dimension), np.float32)
        self.live = np.zeros(0, bool)
        self.beneath: list[VectorCache] = []  # the mapped segments under the rows held here
        self.entry: dict | None = None  # a segment's entry in its table's list of segments

    def reset(self, rows, state) -> None:
        """Replace everything with ``rows`` of (key, id, embedding bytes)."""
        keys, vectors = self._parse(rows)
        order = np.argsort(keys, kind="stable")
        self.keys, self.matrix, self.live = keys[order], vectors[order], np.ones(len(keys), bool)
        self.state, self.beneath = state, []

    def adopt(self, beneath: list[VectorCache], state) -> None:
        """Hold no rows of its own, over the segments ``beneath``, which cover the table at ``state``."""
        self.keys, self.matrix = np.zeros(0, np.int64), np.zeros((0, self.dimension), np.float32)
        self.live, self.state, self.beneath = np.zeros(0, bool), state, beneath  # the old buffers are freed

    def apply(self, touched: np.ndarray, rows, state) -> None:
        """Mark ``touched`` keys dead, then (re)insert ``rows``: updates in place, new keys appended."""
        self._kill(touched)
        keys, vectors = self._parse(rows)
        pos = np.searchsorted(self.keys, keys)
        known = pos < len(self.keys)  # a cache loaded from an empty table has no keys to compare with
        known[known] = self.keys[pos[known]] == keys[known]
        self.matrix[pos[known]], self.live[pos[known]] = vectors[known], True
        new = ~known
        if new.any():
            order = np.argsort(keys[new])
            resort = len(self.keys) and keys[new][order[0]] < self.keys[-1]  # a segment's row came back
            self._append(keys[new][order], vectors[new][order])
            if resort:
                order = np.argsort(self.keys, kind="stable")
                self.keys, self.matrix, self.live = self.keys[order], self.matrix[order], self.live[order]
        if (~self.live).sum() * 2 > len(self.live):
            self.keys, self.matrix, self.live = self.keys[self.live], self.matrix[self.live], self.live[self.live]
        self.state = state

    def _append(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Append in place, into buffers that grow by doubling (an add of 10 rows copies 10 rows)."""
        n, m = len(self.keys), len(keys)
        if self.matrix.base is None or n + m > len(self.matrix.base):
            capacity = max(n + m, 2 * n, 1024)
            matrix, buffers = (
                np.empty((capacity, self.dimension), np.float32),
                (np.empty(capacity, np.int64), np.empty(capacity, bool)),
            )
            matrix[:n], buffers[0][:n], buffers[1][:n] = self.matrix, self.keys, self.live
        else:
            matrix, buffers = self.matrix.base, (self.keys.base, self.live.base)
        matrix[n : n + m], buffers[0][n : n + m], buffers[1][n : n + m] = vectors, keys, True
        self.matrix, self.keys, self.live = matrix[: n + m], buffers[0][: n + m], buffers[1][: n + m]

    def _kill(self, touched: np.ndarray) -> None:
        if len(touched) and len(self.keys):
            self.live[np.isin(self.keys, touched)] = False
        for part in self.beneath:
            part._kill(touched)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, keys) of the best ``k`` live rows (among the ``allowed`` keys), best first."""
        found = [part._search(queries, k, allowed) for part in (self, *self.beneath)]
        if len(found) == 1:
            return found[0]
        scores, keys = (np.concatenate(side, axis=1) for side in zip(*found))
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, best, axis=1), np.take_along_axis(keys, best, axis=1)

    def _search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if allowed is None:
            scores, rows = top_k(self.matrix, queries, k, None if self.live.all() else self.live)
            return scores, self.keys[rows]
        if not len(self.keys):
            return top_k(self.matrix, queries, k)
        rows = np.minimum(np.searchsorted(self.keys, allowed), len(self.keys) - 1)
        rows = rows[(self.keys[rows] == allowed) & self.live[rows]]
        if len(rows) * 8 > len(self.keys):  # most rows: one product over all of them, the rest masked
            mask = np.zeros(len(self.keys), bool)
            mask[rows] = True
            scores, found = top_k(self.matrix, queries, k, mask)
            return scores, self.keys[found]
        scores, found = top_k(self.matrix[rows], queries, k)
        return scores, self.keys[rows[found]]

    def vectors(self, keys: np.ndarray) -> np.ndarray:
        """The cached vectors of ``keys`` (live keys, as ``search`` returns them), in their shape."""
        out = np.empty((*keys.shape, self.dimension), np.float32)
        for part in (self, *self.beneath):
            if len(part.keys):
                pos = np.minimum(np.searchsorted(part.keys, keys), len(part.keys) - 1)
                here = (part.keys[pos] == keys) & part.live[pos]
                out[here] = part.matrix[pos[here]]
        return out

    def _parse(self, rows) -> tuple[np.ndarray, np.ndarray]:
        rows = list(rows)
        width = 4 * self.dimension
        for row in rows:
            if len(row[2]) != width:
                raise CorruptIndexError(
                    f"{self.where}: the embedding of document {row[1]!r} has {len(row[2])} bytes, not {width}"
                )
        keys = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(bytes(r[2]) for r in rows), dtype="<f4").reshape(len(rows), self.dimension)
        return keys, vectors.astype(np.float32, copy=False)  # copied where kept: by order, mask or append
