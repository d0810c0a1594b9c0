"""The modules a SentenceTransformer chains: Transformer, Pooling, Dense, Normalize (and a SparseEncoder's
SpladePooling)."""

from .dense import Dense
from .normalize import Normalize
from .pooling import Pooling
from .splade_pooling import SpladePooling
from .transformer import Transformer

__all__ = ["Dense", "Normalize", "Pooling", "SpladePooling", "Transformer"]
