"""Paraphrase mining and community detection over embeddings, as in ``sentence_transformers.util``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .similarity import _batch, cos_sim, normalize_embeddings


def paraphrase_mining(
    model,
    sentences: list[str],
    show_progress_bar: bool = False,
    batch_size: int = 32,
    query_chunk_size: int = 5000,
    corpus_chunk_size: int = 100000,
    max_pairs: int = 500000,
    top_k: int = 100,
    score_function: Callable = cos_sim,
    truncate_dim: int | None = None,
    prompt_name: str | None = None,
    prompt: str | None = None,
) -> list[list[float | int]]:
    """Encode ``sentences`` and return the most similar pairs as ``[score, i, j]`` (i < j), best first."""
    embeddings = model.encode(
        sentences,
        show_progress_bar=show_progress_bar,
        batch_size=batch_size,
        convert_to_tensor=True,
        truncate_dim=truncate_dim,
        prompt_name=prompt_name,
        prompt=prompt,
    )
    return paraphrase_mining_embeddings(
        embeddings, query_chunk_size, corpus_chunk_size, max_pairs, top_k, score_function
    )


def paraphrase_mining_embeddings(
    embeddings,
    query_chunk_size: int = 5000,
    corpus_chunk_size: int = 100000,
    max_pairs: int = 500000,
    top_k: int = 100,
    score_function: Callable = cos_sim,
) -> list[list[float | int]]:
    """Each row's ``top_k`` nearest other rows, as distinct pairs ``[score, i, j]`` with i < j; the
    ``max_pairs`` best, best first. ``score_function`` must be symmetric."""
    emb = _batch(embeddings)
    n = len(emb)
    scores, pairs = np.zeros(0, np.float32), np.zeros((0, 2), np.int64)
    for start in range(0, n, query_chunk_size):
        values, idx = _top(
            score_function, emb[start : start + query_chunk_size], emb, min(top_k + 1, n), corpus_chunk_size
        )
        rows = np.arange(start, start + len(values))[:, None]
        others = idx != rows
        keep = others & (np.cumsum(others, axis=1) <= top_k)
        i, j = np.broadcast_to(rows, idx.shape)[keep], idx[keep]
        scores = np.concatenate([scores, values[keep]])
        pairs = np.concatenate([pairs, np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1)])
        _, first = np.unique(pairs[:, 0] * n + pairs[:, 1], return_index=True)
        scores, pairs = scores[first], pairs[first]
        if len(scores) > max_pairs:
            best = np.argpartition(-scores, max_pairs - 1)[:max_pairs]
            scores, pairs = scores[best], pairs[best]
    order = np.lexsort((pairs[:, 1], pairs[:, 0], -scores))
    return [[float(scores[o]), int(pairs[o, 0]), int(pairs[o, 1])] for o in order]


def _top(score_function, queries, corpus, k: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best corpus rows per query, over corpus chunks: (scores, indices), best first."""
    values = indices = None
    for start in range(0, len(corpus), chunk):
        scores = score_function(queries, corpus[start : start + chunk]).detach()
        v, i = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        i = i + start
        if values is not None:
            v, i = torch.cat([values, v], dim=1), torch.cat([indices, i], dim=1)
            v, pos = torch.topk(v, min(k, v.shape[1]), dim=1)
            i = torch.gather(i, 1, pos)
        values, indices = v, i
    return values.cpu().numpy(), indices.cpu().numpy()


def community_detection(
    embeddings,
    threshold: float = 0.75,
    min_community_size: int = 10,
    batch_size: int = 1024,
    show_progress_bar: bool = False,
) -> list[list[int]]:
    """Groups of at least ``min_community_size`` rows whose cosine similarity to a central row is at least
    ``threshold``, largest first. Each group starts with its central row, then the others, most similar
    first; no row is in two groups."""
    emb = normalize_embeddings(_batch(embeddings)) if len(embeddings) else None
    if emb is None or len(emb) < min_community_size:
        return []
    candidates = []
    for start in tqdm(range(0, len(emb), batch_size), desc="Finding clusters", disable=not show_progress_bar):
        scores = emb[start : start + batch_size] @ emb.T
        close = scores >= threshold
        for row in torch.nonzero(close.sum(dim=1) >= min_community_size).flatten().tolist():
            members = torch.nonzero(close[row]).flatten()
            order = torch.argsort(scores[row, members], descending=True, stable=True)
            candidates.append((start + row, members[order].cpu().numpy()))
    candidates.sort(key=lambda c: len(c[1]), reverse=True)
    used = np.zeros(len(emb), dtype=bool)
    communities = []
    for center, members in candidates:
        free = members[~used[members]]
        if not used[center] and len(free) >= min_community_size:
            community = [center] + free[free != center].tolist()
            used[community] = True
            communities.append(community)
    return sorted(communities, key=len, reverse=True)
