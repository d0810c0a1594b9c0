"""Vector stores over embedkit (or any) encoders: Index, Hit, Record, FaissIndex, SQLIndex, open_index,
and the errors of ``integrations.errors`` (one tree under StoreError).

FAISS and SQLAlchemy are imported only when FaissIndex, SQLIndex or open_index is first used.
"""

from typing import TYPE_CHECKING

from integrations.encoders import Encoder
from integrations.errors import (
    CorruptIndexError,
    DimensionMismatchError,
    FilterError,
    IndexClosedError,
    IndexNotFoundError,
    NotAnIndexError,
    ReadOnlyIndexError,
    SearchError,
    StoreError,
)
from integrations.index import Index
from integrations.records import Hit, Record

if TYPE_CHECKING:
    from integrations.faiss import FaissIndex
    from integrations.sql import SQLIndex
    from integrations.targets import open_index

__all__ = [
    "CorruptIndexError",
    "DimensionMismatchError",
    "Encoder",
    "FaissIndex",
    "FilterError",
    "Hit",
    "Index",
    "IndexClosedError",
    "IndexNotFoundError",
    "NotAnIndexError",
    "ReadOnlyIndexError",
    "Record",
    "SQLIndex",
    "SearchError",
    "StoreError",
    "open_index",
]


def __getattr__(name: str):
    if name == "FaissIndex":
        from integrations.faiss import FaissIndex

        return FaissIndex
    if name == "open_index":
        from integrations.targets import open_index

        return open_index
    if name == "SQLIndex":
        from integrations.sql import SQLIndex

        return SQLIndex
    raise AttributeError(f"module 'integrations' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
