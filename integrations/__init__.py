"""Vector stores over embedkit (or any) encoders: Index, Hit, FaissIndex, SQLIndex, open_index, and the
errors FilterError, CorruptIndexError and NotAnIndexError (ValueErrors) and ReadOnlyIndexError (a
PermissionError).

FAISS and SQLAlchemy are imported only when FaissIndex, SQLIndex or open_index is first used.
"""

from .encoders import Encoder
from .filters import FilterError
from .index import CorruptIndexError, Hit, Index, NotAnIndexError, ReadOnlyIndexError, Record

__all__ = [
    "CorruptIndexError",
    "Encoder",
    "FaissIndex",
    "FilterError",
    "Hit",
    "Index",
    "NotAnIndexError",
    "ReadOnlyIndexError",
    "Record",
    "SQLIndex",
    "open_index",
]


def __getattr__(name: str):
    if name == "FaissIndex":
        from .faiss import FaissIndex

        return FaissIndex
    if name == "open_index":
        from .open import open_index

        return open_index
    if name == "SQLIndex":
        from .sql import SQLIndex

        return SQLIndex
    raise AttributeError(f"module 'integrations' has no attribute {name!r}")
