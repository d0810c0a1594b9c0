"""embedkit: sentence embeddings, drop-in compatible with sentence-transformers."""

__version__ = "0.1.0"

from . import util  # noqa: E402
from .model import SentenceTransformer  # noqa: E402
from .util import *  # noqa: E402, F403 - cos_sim, dot_score, ..., quantize_embeddings, semantic_search

__all__ = ["SentenceTransformer", "util", *util.__all__]
