"""The errors the stores raise, one tree under ``StoreError``::

    StoreError
    ├── InvalidInputError (ValueError)        a bad argument (texts, ids, metadata, vectors, k, mode), named
    │   └── WrongTypeError (TypeError)        one of the wrong type
    ├── UnknownIdsError (KeyError)            ids the index does not hold
    ├── RerankError (ValueError)              the reranker gave no usable scores (NaN, infinity, a wrong count)
    ├── FilterError (ValueError)              a malformed metadata filter, naming the offending part
    ├── CorruptIndexError (ValueError)        damaged files or rows, naming the file or table
    │   └── NotAnIndexError                   another store's files, a plain file, an empty docstore
    ├── DimensionMismatchError (ValueError)   an index built for vectors of another dimension
    ├── IndexClosedError (ValueError)         a call on a closed index
    ├── IndexNotFoundError (FileNotFoundError) no index where one must exist (create=False, the CLI)
    ├── ReadOnlyIndexError (PermissionError)  a write to an index on read-only storage
    ├── StorageError (OSError)                a full disk, a lost or unreachable database server, a file not opened
    └── SearchError (RuntimeError)            the database failed a search (its own message, no SQL)

Each keeps the built-in base it had before the tree existed, so ``except ValueError`` code keeps working.
"""


class StoreError(Exception):
    """Any error of the stores' own."""


class InvalidInputError(StoreError, ValueError):
    """A bad argument to a store call; the message names it and its position. Nothing was written."""


class WrongTypeError(InvalidInputError, TypeError):
    """An argument of the wrong type (a str where a list belongs, None where a list of dicts does)."""


class UnknownIdsError(StoreError, KeyError):
    """Ids that the index does not hold; the message names the first few. Nothing was changed."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RerankError(StoreError, ValueError):
    """The reranker gave no usable scores: NaN or infinity, or not one score per passage."""


class FilterError(StoreError, ValueError):
    """A malformed metadata filter; the message names the offending part."""


class CorruptIndexError(StoreError, ValueError):
    """A store's files or rows are damaged; the message names the file or table."""


class NotAnIndexError(CorruptIndexError):
    """The path or database holds something other than this store's files: another store's database, a
    plain file, an empty docstore beside snapshots. Nothing was written to it."""


class DimensionMismatchError(StoreError, ValueError):
    """The index holds vectors of another dimension than the encoder or the embeddings given."""


class IndexClosedError(StoreError, ValueError):
    """The index was closed; open it again to use it."""


class IndexNotFoundError(StoreError, FileNotFoundError):
    """No index exists at the target, and none may be created there; nothing was created."""


class ReadOnlyIndexError(StoreError, PermissionError):
    """A write to an index opened from read-only storage; searches and reads still work."""


class StorageError(StoreError, OSError):
    """The storage under the index failed: a full disk, a database server that cannot be reached or went
    away, a database file that cannot be opened. The message names the file or URL."""


class SearchError(StoreError, RuntimeError):
    """The database failed a search; the message is the database's own, without the SQL."""
