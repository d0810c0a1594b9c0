"""Similarity functions over embeddings, and exhaustive semantic search."""

from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

SIMILARITY_FUNCTIONS = ("cosine", "dot", "euclidean", "manhattan")


def _tensor(a) -> Tensor:
    if isinstance(a, Tensor):
        t = a
    elif isinstance(a, list) and a and isinstance(a[0], Tensor):
        t = torch.stack(a)
    else:
        t = torch.as_tensor(np.asarray(a))
    return t.float() if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16) else t


def _batch(a) -> Tensor:
    t = _tensor(a)
    return t.unsqueeze(0) if t.dim() == 1 else t


def normalize_embeddings(embeddings):
    """Rows scaled to unit length; a tensor stays a tensor and an array an array."""
    if isinstance(embeddings, Tensor):
        return F.normalize(embeddings, p=2, dim=-1)
    array = np.asarray(embeddings)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    return array / np.maximum(norms, 1e-12)


def truncate_embeddings(embeddings, truncate_dim: int | None):
    """The first ``truncate_dim`` dimensions (Matryoshka); None keeps them all."""
    return embeddings[..., :truncate_dim]


def cos_sim(a, b) -> Tensor:
    """Matrix of cosine similarities: res[i][j] = cos(a[i], b[j])."""
    return F.normalize(_batch(a), p=2, dim=1) @ F.normalize(_batch(b), p=2, dim=1).T


def dot_score(a, b) -> Tensor:
    """Matrix of dot products."""
    return _batch(a) @ _batch(b).T


def euclidean_sim(a, b) -> Tensor:
    """Matrix of negative euclidean distances."""
    return -torch.cdist(_batch(a), _batch(b), p=2.0)


def manhattan_sim(a, b) -> Tensor:
    """Matrix of negative manhattan distances."""
    return -torch.cdist(_batch(a), _batch(b), p=1.0)


def pairwise_cos_sim(a, b) -> Tensor:
    """Vector of cos(a[i], b[i])."""
    return pairwise_dot_score(F.normalize(_tensor(a), p=2, dim=-1), F.normalize(_tensor(b), p=2, dim=-1))


def pairwise_dot_score(a, b) -> Tensor:
    return (_tensor(a) * _tensor(b)).sum(dim=-1)


def pairwise_euclidean_sim(a, b) -> Tensor:
    return -torch.linalg.vector_norm(_tensor(a) - _tensor(b), dim=-1)


def pairwise_manhattan_sim(a, b) -> Tensor:
    return -torch.sum(torch.abs(_tensor(a) - _tensor(b)), dim=-1)


SIMILARITY = {"cosine": cos_sim, "dot": dot_score, "euclidean": euclidean_sim, "manhattan": manhattan_sim}
PAIRWISE = {
    "cosine": pairwise_cos_sim,
    "dot": pairwise_dot_score,
    "euclidean": pairwise_euclidean_sim,
    "manhattan": pairwise_manhattan_sim,
}


def semantic_search(
    query_embeddings,
    corpus_embeddings,
    top_k: int = 10,
    score_function: Callable[[Tensor, Tensor], Tensor] = cos_sim,
    query_chunk_size: int = 100,
    corpus_chunk_size: int = 500000,
) -> list[list[dict]]:
    """For each query, the ``top_k`` corpus entries as ``{"corpus_id", "score"}`` dicts, best first."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    queries = _batch(query_embeddings)
    corpus = _batch(corpus_embeddings)
    if queries.shape[-1] != corpus.shape[-1]:
        raise ValueError(f"query dimension {queries.shape[-1]} != corpus dimension {corpus.shape[-1]}")
    corpus = corpus.to(queries.device)
    results: list[list[tuple[float, int]]] = [[] for _ in range(len(queries))]
    for c_start in range(0, len(corpus), corpus_chunk_size):
        chunk = corpus[c_start : c_start + corpus_chunk_size]
        for q_start in range(0, len(queries), query_chunk_size):
            scores = score_function(queries[q_start : q_start + query_chunk_size], chunk)
            values, idx = torch.topk(scores, min(top_k, scores.shape[1]), dim=1, largest=True, sorted=False)
            for heap, ids, vals in zip(results[q_start:], (idx + c_start).tolist(), values.tolist()):
                for item in zip(vals, ids):
                    if len(heap) < top_k:
                        heapq.heappush(heap, item)
                    else:
                        heapq.heappushpop(heap, item)
    return [[{"corpus_id": i, "score": s} for s, i in sorted(heap, reverse=True)] for heap in results]
