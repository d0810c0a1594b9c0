"""SQLAlchemy engines for SQLIndex: SQLite with WAL and queued writers, PostgreSQL with pgvector, and a
check that an index exists which creates nothing."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sqlite3
import urllib.parse

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql

from embedkit._optional import require
from integrations._shared import sqlite_files
from integrations.errors import IndexNotFoundError, NotAnIndexError, SearchError
from integrations.sql import postgres

logger = logging.getLogger(__name__)


META_TABLE = "embedkit_meta"


def meta_table() -> sa.Table:
    """The settings of every SQLIndex table in a database: one row per table (its info and version)."""
    return sa.Table(
        META_TABLE,
        sa.MetaData(),
        sa.Column("table_name", sa.Text, primary_key=True),
        sa.Column("info", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
    )


def check_table_name(table: str) -> None:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", table or "") or table.lower().startswith(
        ("embedkit_", "sqlite_", "pg_")
    ):
        raise ValueError(
            "table must be a plain SQL identifier of at most 63 letters, digits and _, not starting with "
            f"embedkit_, sqlite_ or pg_ (names this library or the database reserve); got {table!r}"
        )


def parse_url(url: str) -> sa.engine.URL:
    """``url`` parsed; ValueError unless it names a SQLite or PostgreSQL database."""
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"url must be a SQLAlchemy URL such as 'sqlite:///docs.db', got {url!r}")
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise ValueError(f"{url!r} is not a database URL (e.g. sqlite:///docs.db, postgresql+psycopg://...)") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(
            f"{parsed.get_backend_name()!r} is not a database this library opens: use sqlite:///docs.db, "
            "postgresql+psycopg://..., or a folder path for a FAISS index"
        )
    return parsed


def sqlite_file(parsed: sa.engine.URL) -> str | None:
    """The file of a SQLite URL; None for other databases, in-memory ones and ``file:`` URIs."""
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return None if parsed.database.startswith("file:") else parsed.database


def check_exists(url: str, table: str = "documents") -> None:
    """IndexNotFoundError (a FileNotFoundError) unless the database at ``url`` exists and holds ``table``;
    creates nothing."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        file = sqlite_file(parsed)
        if file is None:
            raise IndexNotFoundError(f"no index at {url!r}: an in-memory database starts empty")
        if not os.path.isfile(file):  # connecting would create it
            raise IndexNotFoundError(f"no index at {url!r}: {file} does not exist")
        exists = _sqlite_has_table(file, table)
    else:
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                exists = sa.inspect(conn).has_table(table)
        finally:
            engine.dispose()
    if not exists:
        raise IndexNotFoundError(f"no index at {parsed.render_as_string(hide_password=True)!r}: no table {table!r}")


def recorded_info(url: str, table: str = "documents") -> dict | None:
    """The model's name, dimension and prompts that the existing SQLIndex ``table`` records (None where
    its settings row is missing or unreadable: opening it with the model then says why)."""
    engine, meta = make_engine(url), meta_table()
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(META_TABLE):
                return None
            row = conn.execute(sa.select(meta.c.info).where(sa.func.lower(meta.c.table_name) == table.lower())).first()
    finally:
        engine.dispose()
    try:
        info = json.loads(row.info) if row is not None else None
    except json.JSONDecodeError:
        return None
    return info if isinstance(info, dict) and {"model", "dimension"} <= info.keys() else None


def _sqlite_has_table(file: str, table: str) -> bool:
    """Whether the SQLite ``file`` holds ``table``, read without an engine: nothing is created and the
    journal mode is left alone."""
    if sqlite_files.on_read_only_storage(file):
        conn = sqlite_files.connect_read_only(file)
    else:
        conn = sqlite3.connect("file:" + urllib.parse.quote(os.path.abspath(file)) + "?mode=rw", uri=True)
    try:
        found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE", (table,))
        return found.fetchone() is not None
    except sqlite3.DatabaseError as exc:
        raise sqlite_files.translate(exc, file) or exc from None
    finally:
        conn.close()


def make_engine(url: str, **kwargs) -> sa.Engine:
    """An engine for ``url``; a SQLite file on read-only storage opens immutable (reads only)."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "postgresql":
        require("postgres", "SQLIndex on PostgreSQL")
    file = sqlite_file(parsed)
    if file is not None and os.path.isdir(file):
        raise NotAnIndexError(
            f"{file} is a folder, not a SQLite file (a FaissIndex folder is opened by its path, without sqlite:///)"
        )
    if file is not None and sqlite_files.on_read_only_storage(file):
        kwargs.setdefault("creator", lambda: sqlite_files.connect_read_only(file, check_same_thread=False))
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    elif engine.dialect.name == "postgresql":
        postgres.configure(engine)
    else:
        raise ValueError(f"SQLIndex supports SQLite and PostgreSQL, not {engine.dialect.name!r}")
    return engine


def _configure_sqlite(engine: sa.Engine) -> None:
    """16 KiB pages for a new file, WAL, a 60 s busy timeout, and BEGIN IMMEDIATE for writes so concurrent
    writers queue instead of failing."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let SQLAlchemy's begin event issue BEGIN
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA busy_timeout = 60000")
        cursor.execute(f"PRAGMA page_size = {sqlite_files.PAGE_SIZE}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("embedkit_write") else "BEGIN")


def ensure_pgvector(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        try:
            with conn.begin():
                conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
        except sa.exc.DBAPIError as exc:
            logger.info("Could not create the vector extension: %s", exc.orig)
        found = conn.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")).first() is not None
    engine.dispose()  # later connections register the vector type, which this one predates
    return found


@contextlib.contextmanager
def search_errors(where: str, translate):
    """Database errors in a search as SearchError with the database's own message, not 100 KB of SQL; those
    that ``translate`` knows (damaged files and the like) as they are."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        if translate(exc) is not None:
            raise
        raise SearchError(f"{where}: search failed: {str(exc.orig).strip()[:300]}") from None
    except Exception as exc:
        if not type(exc).__module__.startswith("psycopg"):  # raised by the driver on the PostgreSQL path
            raise
        raise SearchError(f"{where}: search failed: {str(exc).strip()[:300]}") from None


def documents_table(name: str, dimension: int, dialect: str, uses_pgvector: bool, sparse: bool = False) -> sa.Table:
    """The table of an index's rows, its vectors in pgvector's column type where it is used; with ``sparse``,
    its rows' sparse vectors in a ``sparsevec`` column and their postings' key in ``sparse_sid`` (PostgreSQL)."""
    extra = []
    if sparse:
        from pgvector.sqlalchemy import SPARSEVEC

        extra += [sa.Column("sparse", SPARSEVEC(), nullable=True), sa.Column("sparse_sid", sa.BigInteger)]
    if uses_pgvector:
        from pgvector.sqlalchemy import Vector

        embedding, metadata = Vector(dimension), postgresql.JSONB
    else:
        embedding, metadata = sa.LargeBinary, (postgresql.JSONB if dialect == "postgresql" else sa.Text)
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("metadata", metadata, nullable=False),
        sa.Column("embedding", embedding, nullable=False),
        sa.Column("doc", sa.Text, nullable=True),  # the document of a later chunk
        sa.Column("span", sa.Text, nullable=True),  # a chunk's characters, as JSON [start, end]
        *extra,
    )


def add_chunk_columns(conn, table: str, key: str) -> None:
    """Tables written before chunking lack ``doc`` and ``span``: add them (NULL: whole documents), and the
    index of later chunks by their document."""
    present = {column["name"] for column in sa.inspect(conn).get_columns(table)}
    for name in ("doc", "span"):
        if name not in present:
            conn.exec_driver_sql(f'ALTER TABLE "{table}" ADD COLUMN {name} TEXT')
    on_postgres = conn.dialect.name == "postgresql"
    name = postgres.index_name(table, "doc") if on_postgres else f"embedkit_doc_{key}"
    # only later chunks have a doc, so on SQLite (which proves doc IN (...) implies it) the index holds
    # only theirs: a bulk add of whole documents costs a fifth less
    partial = "" if on_postgres else " WHERE doc IS NOT NULL"
    conn.exec_driver_sql(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" (doc){partial}')
