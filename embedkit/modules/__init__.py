"""The modules a SentenceTransformer chains: Transformer, Pooling, Dense, Normalize."""

from .dense import Dense
from .normalize import Normalize
from .pooling import Pooling
from .transformer import Transformer

__all__ = ["Dense", "Normalize", "Pooling", "Transformer"]
