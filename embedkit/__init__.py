"""embedkit: sentence embeddings, drop-in compatible with sentence-transformers.

Names load on first use, so that ``import integrations`` and ``embedkit --help`` do not import torch.
"""

import importlib

__version__ = "0.1.0"

UTIL_NAMES = [
    "cos_sim",
    "dot_score",
    "euclidean_sim",
    "manhattan_sim",
    "pairwise_cos_sim",
    "pairwise_dot_score",
    "pairwise_euclidean_sim",
    "pairwise_manhattan_sim",
    "quantize_embeddings",
    "semantic_search",
]
__all__ = ["SentenceTransformer", "util", *UTIL_NAMES]


def __getattr__(name: str):
    if name == "SentenceTransformer":
        from .model import SentenceTransformer

        return SentenceTransformer
    if name == "util" or name in UTIL_NAMES:
        util = importlib.import_module("embedkit.util")
        return util if name == "util" else getattr(util, name)
    raise AttributeError(f"module 'embedkit' has no attribute {name!r}")
