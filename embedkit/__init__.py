"""embedkit: sentence embeddings, drop-in compatible with sentence-transformers."""

__version__ = "0.1.0"

from . import util  # noqa: E402
from .model import SentenceTransformer  # noqa: E402
from .quantization import quantize_embeddings  # noqa: E402
from .similarity import (  # noqa: E402
    cos_sim,
    dot_score,
    euclidean_sim,
    manhattan_sim,
    pairwise_cos_sim,
    pairwise_dot_score,
    pairwise_euclidean_sim,
    pairwise_manhattan_sim,
    semantic_search,
)

__all__ = [
    "SentenceTransformer",
    "quantize_embeddings",
    "cos_sim",
    "dot_score",
    "euclidean_sim",
    "manhattan_sim",
    "pairwise_cos_sim",
    "pairwise_dot_score",
    "pairwise_euclidean_sim",
    "pairwise_manhattan_sim",
    "semantic_search",
    "util",
]
