"""Vector stores over embedkit (or any) encoders: Index, Hit, FaissIndex, SQLIndex.

FAISS and SQLAlchemy are imported only when FaissIndex or SQLIndex is first used.
"""

from .index import Encoder, Hit, Index, Record

__all__ = ["Encoder", "FaissIndex", "Hit", "Index", "Record", "SQLIndex"]


def __getattr__(name: str):
    if name == "FaissIndex":
        from .faiss import FaissIndex

        return FaissIndex
    if name == "SQLIndex":
        from .sql import SQLIndex

        return SQLIndex
    raise AttributeError(f"module 'integrations' has no attribute {name!r}")
