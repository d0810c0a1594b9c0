"""PostgreSQL specifics of SQLIndex: pgvector search, COPY bulk loads, and building HNSW after a load.

- Search runs in a read-only transaction. ``hnsw.iterative_scan`` is set once per connection; a larger
  ``hnsw.ef_search`` is set with ``SET LOCAL`` only when k needs it. The exact fallback (and the count
  that decides it) runs only when the HNSW scan returned fewer than k rows.
- An add of ``COPY_ROWS`` rows or more streams them with binary ``COPY`` into a temporary table, then
  upserts them in one statement, in the same transaction: as fast as pgvector loads, and an existing id
  is still replaced.
- ``SQLIndex.bulk_load()`` drops the HNSW index for the load and builds it once at the end with a larger
  ``maintenance_work_mem``, which pgvector documents as the fast way to load a corpus.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import sqlalchemy as sa

logger = logging.getLogger(__name__)

COPY_ROWS = 1000
EF_SEARCH = 100  # per connection; larger k raise it per query


def index_name(table: str, kind: str = "hnsw") -> str:
    """A short index name: ``table + '_embedding_hnsw'`` would be cut at 63 bytes and could collide."""
    return f"ek_{kind}_" + hashlib.sha1(table.encode()).hexdigest()[:16]


def create_gin(conn, table: str) -> None:
    """A GIN index on the metadata, so that selective equality filters read only their rows."""
    conn.execute(
        sa.text(
            f'CREATE INDEX IF NOT EXISTS "{index_name(table, "gin")}" ON "{table}" USING gin (metadata jsonb_path_ops)'
        )
    )


def configure(engine: sa.Engine) -> None:
    """Search settings once per connection (iterative scans need pgvector 0.8)."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        from pgvector.psycopg import register_vector

        try:
            register_vector(dbapi_conn)  # numpy vectors travel in binary
            with dbapi_conn.cursor() as cursor:
                cursor.execute(f"SET hnsw.ef_search = {EF_SEARCH}")
                cursor.execute("SET hnsw.iterative_scan = strict_order")
        except Exception as exc:  # noqa: BLE001 - an older pgvector, or none: the fallback path needs neither
            logger.info("pgvector search settings not applied: %s", exc)
        dbapi_conn.commit()


def has_hnsw(conn, table: str) -> bool:
    return (
        conn.execute(
            sa.text("SELECT 1 FROM pg_indexes WHERE tablename = :t AND indexdef LIKE '%USING hnsw%'"), {"t": table}
        ).first()
        is not None
    )


def create_hnsw(conn, table: str, maintenance_work_mem: str | None = None) -> None:
    if has_hnsw(conn, table):
        return
    if maintenance_work_mem:
        conn.execute(sa.select(sa.func.set_config("maintenance_work_mem", maintenance_work_mem, True)))
    conn.execute(sa.text(f'CREATE INDEX "{index_name(table)}" ON "{table}" USING hnsw (embedding vector_cosine_ops)'))


def drop_hnsw(conn, table: str) -> None:
    names = conn.execute(
        sa.text("SELECT indexname FROM pg_indexes WHERE tablename = :t AND indexdef LIKE '%USING hnsw%'"), {"t": table}
    ).scalars()
    for name in list(names):
        conn.execute(sa.text(f'DROP INDEX "{name}"'))


def copy_upsert(conn, table: str, dimension: int, rows) -> None:
    """Binary COPY into a temporary table, then one upsert into ``table`` (inside the caller's transaction)."""
    from pgvector.psycopg import register_vector

    raw = conn.connection.driver_connection
    register_vector(raw)
    with raw.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS embedkit_staging (id text, text text, metadata text, "
            f"embedding vector({dimension})) ON COMMIT DELETE ROWS"
        )
        with cursor.copy("COPY embedkit_staging FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text", "text", "vector"])
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f'INSERT INTO "{table}" (id, text, metadata, embedding) '
            "SELECT id, text, metadata::jsonb, embedding FROM embedkit_staging "
            "ON CONFLICT (id) DO UPDATE SET text = excluded.text, metadata = excluded.metadata, "
            "embedding = excluded.embedding"
        )
        cursor.execute("DROP TABLE embedkit_staging")


def compile_search(engine: sa.Engine, table: sa.Table, k: int, where) -> tuple[str, dict]:
    """The search statement as driver SQL and its bound filter values; the vector binds as ``%(q)s``."""
    c = table.c
    distance = c.embedding.op("<=>")(sa.bindparam("q"))
    query = sa.select(c.id, c.text, c.metadata, distance.label("distance")).where(where).order_by(distance).limit(k)
    compiled = query.compile(dialect=engine.dialect)
    return str(compiled), dict(compiled.params)


def search(engine: sa.Engine, table: sa.Table, vector: np.ndarray, k: int, where, statement) -> list:
    """One round trip in autocommit (a single SELECT is its own read-only snapshot); the exact fallback
    and the count that decides it run only when the HNSW scan returned fewer than k rows."""
    sql, params = statement
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        raw = conn.connection.driver_connection
        if 2 * k > EF_SEARCH:
            raw.execute(f"SET hnsw.ef_search = {min(1000, 2 * k)}")
        try:
            rows = raw.execute(sql, {**params, "q": vector}).fetchall()
        finally:
            if 2 * k > EF_SEARCH:
                raw.execute(f"SET hnsw.ef_search = {EF_SEARCH}")
        if len(rows) < k:
            with raw.transaction():
                raw.execute("SET TRANSACTION READ ONLY")
                count = sa.select(sa.func.count()).select_from(table).where(where).compile(dialect=engine.dialect)
                if raw.execute(str(count), dict(count.params)).fetchone()[0] > len(rows):
                    raw.execute("SET LOCAL enable_indexscan = off")
                    rows = raw.execute(sql, {**params, "q": vector}).fetchall()
    return rows
