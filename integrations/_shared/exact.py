"""Exact inner-product search over a matrix, shared by the in-memory paths of both stores."""

from __future__ import annotations

import numpy as np


def top_k(matrix: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None = None):
    """Exact inner-product search: (scores, row indices) of shape [n_queries, min(k, rows)], best first.
    With ``mask``, only the rows where it is True compete."""
    rows = matrix.shape[0] if mask is None else int(mask.sum())
    k = min(k, rows)
    if k == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    scores = queries @ matrix.T
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    part = (
        np.argpartition(-scores, k - 1, axis=1)[:, :k]
        if k < matrix.shape[0]
        else np.tile(np.arange(k), (len(queries), 1))
    )
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part_scores, order, axis=1), np.take_along_axis(part, order, axis=1)
