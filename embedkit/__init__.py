"""embedkit: sentence embeddings, drop-in compatible with sentence-transformers.

Names load on first use, so that ``import integrations`` and ``embedkit --help`` do not import torch.
"""

import importlib

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "SentenceTransformer":
        from .model import SentenceTransformer

        return SentenceTransformer
    if name.startswith("__") and name != "__all__":
        raise AttributeError(f"module 'embedkit' has no attribute {name!r}")
    util = importlib.import_module("embedkit.util")  # cos_sim, ..., quantize_embeddings, semantic_search
    if name == "util":
        return util
    if name == "__all__":
        return ["SentenceTransformer", "util", *util.__all__]
    if name in util.__all__:
        return getattr(util, name)
    raise AttributeError(f"module 'embedkit' has no attribute {name!r}")
