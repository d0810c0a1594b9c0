"""embedkit: sentence embeddings, drop-in compatible with sentence-transformers.

Names load on first use, so that ``import integrations`` and ``embedkit --help`` do not import torch;
``dir(embedkit)``, IDEs and type checkers still see every public name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:
    from . import models, util
    from .cross_encoder import CrossEncoder
    from .model import SentenceTransformer
    from .sparse_encoder import SparseEncoder
    from .util import (
        LoggingHandler,
        community_detection,
        cos_sim,
        dot_score,
        euclidean_sim,
        manhattan_sim,
        normalize_embeddings,
        pairwise_cos_sim,
        pairwise_dot_score,
        pairwise_euclidean_sim,
        pairwise_manhattan_sim,
        paraphrase_mining,
        paraphrase_mining_embeddings,
        quantize_embeddings,
        semantic_search,
        truncate_embeddings,
    )

__all__ = [
    "CrossEncoder",
    "LoggingHandler",
    "SentenceTransformer",
    "SparseEncoder",
    "__version__",
    "community_detection",
    "cos_sim",
    "dot_score",
    "euclidean_sim",
    "manhattan_sim",
    "models",
    "normalize_embeddings",
    "pairwise_cos_sim",
    "pairwise_dot_score",
    "pairwise_euclidean_sim",
    "pairwise_manhattan_sim",
    "paraphrase_mining",
    "paraphrase_mining_embeddings",
    "quantize_embeddings",
    "semantic_search",
    "truncate_embeddings",
    "util",
]


def __getattr__(name: str):
    if name == "SentenceTransformer":
        return importlib.import_module("embedkit.model").SentenceTransformer
    if name == "SparseEncoder":
        return importlib.import_module("embedkit.sparse_encoder").SparseEncoder
    if name == "CrossEncoder":
        return importlib.import_module("embedkit.cross_encoder").CrossEncoder
    if name == "models":
        return importlib.import_module("embedkit.models")
    if name == "util" or name in __all__:
        util = importlib.import_module("embedkit.util")  # cos_sim, ..., quantize_embeddings, semantic_search
        return util if name == "util" else getattr(util, name)
    raise AttributeError(f"module 'embedkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
