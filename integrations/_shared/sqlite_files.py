"""SQLite files as the stores meet them: whose they are, whether they are damaged, and opening them from
read-only storage; id lists bound as one JSON array; and the triggers that keep a derived table (keyword
index, filter postings) in step with a table.

- A FaissIndex docstore carries ``PRAGMA application_id = DOCSTORE_ID`` (docstores written before it are
  recognized by their tables), so neither store mistakes the other's file for its own.
- Damage (SQLITE_CORRUPT, SQLITE_NOTADB) is told apart from a busy or full database, so that it can be
  reported as ``CorruptIndexError`` naming the file.
- New files get 16 KiB pages (SQLite's default is 4 KiB, which holds two rows with a 1.5 KB vector code and
  wastes the rest): a bulk add of 200k rows then costs about 15% less. 64 KiB saves 5% more, but a file of 20
  documents takes 0.9 MB instead of 0.2 MB. A file keeps the page size it was created with.
- On read-only storage SQLite cannot create a WAL file's shared-memory index, so a database there is opened
  ``immutable``: readable, and refused for writes. That is only sound when no WAL holds unapplied commits.
"""

from __future__ import annotations

import json
import os
import sqlite3
import urllib.parse

import numpy as np
import sqlalchemy as sa

from integrations.errors import CorruptIndexError, ReadOnlyIndexError, StorageError

DOCSTORE_ID = 0x656B6673  # "ekfs"
DOCSTORE_TABLES = {"info", "docs", "bodies", "dead"}
PAGE_SIZE = 16384  # bytes a page in new files (set before journal_mode: a file in WAL mode keeps its own)


def tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def is_docstore(conn: sqlite3.Connection) -> bool:
    """Whether the database is a FaissIndex docstore (by its application id, or its tables if older)."""
    (app_id,) = conn.execute("PRAGMA application_id").fetchone()
    return app_id == DOCSTORE_ID or (app_id == 0 and DOCSTORE_TABLES <= tables(conn))


def is_damage(exc: BaseException) -> bool:
    """Whether an sqlite3 error reports a damaged file (not a lock, a full disk or a bad statement)."""
    return _reports(exc, ("SQLITE_CORRUPT", "SQLITE_NOTADB"), ("malformed", "not a database"))


def is_read_only(exc: BaseException) -> bool:
    """Whether an sqlite3 error reports a write to a read-only database."""
    return _reports(exc, ("SQLITE_READONLY",), ("readonly database",))


def _reports(exc: BaseException, codes: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    name = getattr(exc, "sqlite_errorname", None)  # Python 3.11+; older ones only have the message
    return name.startswith(codes) if name is not None else any(w in str(exc) for w in words)


def translate(exc: BaseException, where: str) -> Exception | None:
    """The error of this library's own that an sqlite3 (or SQLAlchemy-wrapped) error means: damage or a
    write to read-only storage; None for any other error."""
    orig = getattr(exc, "orig", exc)  # SQLAlchemy's DBAPIError wraps the driver's
    if is_damage(orig):
        return CorruptIndexError(f"{where}: the database is damaged ({orig})")
    if is_read_only(orig):
        return ReadOnlyIndexError(f"{where}: the index is read-only (its database cannot be written)")
    if _reports(orig, ("SQLITE_FULL",), ("database or disk is full",)):
        return StorageError(f"{where}: the disk is full; this call wrote nothing")
    if _reports(orig, ("SQLITE_CANTOPEN",), ("unable to open database file",)):
        return StorageError(f"{where}: the database file cannot be opened or created")
    if _reports(orig, ("SQLITE_IOERR",), ("disk I/O error",)):
        return StorageError(f"{where}: the disk failed ({orig}); this call wrote nothing")
    return None


def on_read_only_storage(file: str) -> bool:
    """Whether ``file`` exists in a folder that cannot be written (a read-only mount, say)."""
    return os.path.isfile(file) and not os.access(os.path.dirname(os.path.abspath(file)), os.W_OK)


def connect_read_only(file: str, **kwargs) -> sqlite3.Connection:
    """``file`` opened immutable, for reading from read-only storage."""
    wal = file + "-wal"
    if os.path.exists(wal) and os.path.getsize(wal) > 0:
        raise CorruptIndexError(
            f"{file}: the database is on read-only storage with commits still in its WAL file; "
            "open it once where it can be written"
        )
    uri = "file:" + urllib.parse.quote(os.path.abspath(file)) + "?immutable=1"
    return sqlite3.connect(uri, uri=True, **kwargs)


def json_ints(keys: np.ndarray):
    """``keys`` as a subquery over one bound JSON array, however many there are."""
    return json_values(keys.tolist())


def json_values(values: list):
    """``values`` (str or int) as a subquery over one bound JSON array, however many there are."""
    table = sa.func.json_each(json.dumps(values)).table_valued("value")
    return sa.select(table.c.value).scalar_subquery()


def keep_in_step(execute, prefix: str, table: str, insert: str, delete: str, update: str, skip_insert: str) -> None:
    """Triggers ``<prefix>_ai/_ad/_au`` on ``table`` that run the SQL ``insert`` after an insert (not while the
    SQL condition ``skip_insert`` holds: the writer then indexes its new rows itself), ``delete`` after a
    delete, and both after an update (``update``: the event, ``UPDATE`` or ``UPDATE OF <columns>``). An
    insert trigger made before the condition existed is made again with it. The names are checked
    identifiers, so they can sit in the SQL."""
    made = execute("SELECT sql FROM sqlite_master WHERE name = ?", (f"{prefix}_ai",)).fetchone()
    if made is not None and skip_insert not in made[0]:
        execute(f'DROP TRIGGER "{prefix}_ai"')
    for name, event, body in (
        ("ai", f'INSERT ON "{table}" WHEN NOT {skip_insert}', insert),
        ("ad", f'DELETE ON "{table}"', delete),
        ("au", f'{update} ON "{table}"', delete + insert),
    ):
        execute(f'CREATE TRIGGER IF NOT EXISTS "{prefix}_{name}" AFTER {event} BEGIN {body} END')


def file_hint(path: str) -> str:
    """What to say of an index target that is a plain file: a SQLite file is opened by its URL."""
    try:
        with open(path, "rb") as file:
            sqlite = file.read(16) == b"SQLite format 3\x00"
    except OSError:
        sqlite = False
    if sqlite:
        return f"{path} is a SQLite file; give it as a URL: sqlite:///{path}"
    return f"{path} is a file, not a FaissIndex folder; a database is given as a URL (sqlite:///docs.db)"
