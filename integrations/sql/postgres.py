"""PostgreSQL specifics of SQLIndex: pgvector search, COPY bulk loads, and building HNSW after a load.

- Search is one SELECT in autocommit (``Searcher``). ``hnsw.iterative_scan`` and ``hnsw.ef_search`` are
  set once per connection; a larger ``ef_search`` only when k needs it. Selective equality filters are
  served by a GIN index on the metadata and an exact scan of their rows. The exact fallback (and the
  count that decides it) runs only when an HNSW scan returned fewer than k rows.
- An add of ``COPY_ROWS`` rows or more streams them with binary ``COPY`` into a temporary table, then
  upserts them in one statement, in the same transaction: as fast as pgvector loads, and an existing id
  is still replaced.
- ``SQLIndex.bulk_load()`` drops the HNSW index for the load and builds it once at the end with a larger
  ``maintenance_work_mem``, which pgvector documents as the fast way to load a corpus.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from typing import NamedTuple

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from integrations._shared.codec import dump_span
from integrations.errors import StorageError

logger = logging.getLogger(__name__)

COPY_ROWS = 1000
MAX_ID_BYTES = 2048  # a btree entry holds at most about 2,700 bytes; this leaves room for a chunk's suffix
EF_SEARCH = 100  # per connection; larger k raise it per query


def check_id_lengths(ids: list[str]) -> None:
    """Refuse ids too long for the btree indexes on ``id`` and ``doc`` (PostgreSQL cannot store the key)."""
    for i, doc_id in enumerate(ids):
        if len(doc_id.encode()) > MAX_ID_BYTES:
            raise ValueError(
                f"id at index {i} is {len(doc_id.encode())} bytes; "
                f"PostgreSQL indexes ids of at most {MAX_ID_BYTES} bytes"
            )


def index_name(table: str, role: str = "hnsw") -> str:
    """A short index name: ``table + '_embedding_hnsw'`` would be cut at 63 bytes and could collide."""
    return f"ek_{role}_" + hashlib.sha1(table.encode()).hexdigest()[:16]


def create_lookup_indexes(conn, table: str) -> None:
    """A GIN index on the metadata, so that selective equality filters read only their rows, and an index
    on the ids in code-point order, so that paging and iterating in id order read only their rows."""
    for name, on in (("gin", "USING gin (metadata jsonb_path_ops)"), ("ids", '(id COLLATE "C")')):
        conn.execute(sa.text(f'CREATE INDEX IF NOT EXISTS "{index_name(table, name)}" ON "{table}" {on}'))


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


def hnsw_indexes(conn, table: str) -> list[str]:
    """The HNSW indexes on ``table``, whatever they are named (older versions named them differently)."""
    query = sa.text("SELECT indexname FROM pg_indexes WHERE tablename = :t AND indexdef LIKE '%USING hnsw%'")
    return list(conn.execute(query, {"t": table}).scalars())


def table_bytes(engine: sa.Engine, table: str) -> int | None:
    """The table's size on disk, its indexes and TOAST included (the name travels as a bound parameter)."""
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.pg_total_relation_size(sa.func.to_regclass(f'"{table}"')))).scalar()


def create_hnsw(conn, table: str, maintenance_work_mem: str | None = None) -> None:
    if hnsw_indexes(conn, table):
        return
    if maintenance_work_mem:
        conn.execute(sa.select(sa.func.set_config("maintenance_work_mem", maintenance_work_mem, True)))
    conn.execute(sa.text(f'CREATE INDEX "{index_name(table)}" ON "{table}" USING hnsw (embedding vector_cosine_ops)'))


def drop_hnsw(conn, table: str) -> None:
    for name in hnsw_indexes(conn, table):
        conn.execute(sa.text(f'DROP INDEX "{name}"'))


@contextlib.contextmanager
def hnsw_built_after(begin, table: str, uses_pgvector: bool, maintenance_work_mem: str):
    """Around a bulk load: the HNSW index of ``table`` dropped, then built once at the end with
    ``maintenance_work_mem``, and the table analyzed (nothing without pgvector). ``begin()`` opens a write
    transaction."""
    if uses_pgvector:
        with begin() as conn:
            drop_hnsw(conn, table)
    try:
        yield
    finally:
        if uses_pgvector:
            with begin() as conn:
                create_hnsw(conn, table, maintenance_work_mem)
                conn.exec_driver_sql(f'ANALYZE "{table}"')  # fresh statistics for the planner


def row_columns(sparse: bool) -> list[str]:
    """The columns an upsert writes, in the order of its rows' values (the sparse vector and its sid last)."""
    return ["id", "text", "metadata", "embedding", "doc", "span"] + (["sparse", "sparse_sid"] if sparse else [])


def copy_upsert(conn, table: str, dimension: int, rows, sparse: bool = False) -> None:
    """Binary COPY into a temporary table, then one upsert into ``table`` (inside the caller's transaction);
    with ``sparse``, each row ends with its ``sparsevec`` and sid."""
    from pgvector.psycopg import register_vector

    raw = conn.connection.driver_connection
    register_vector(raw)
    columns = row_columns(sparse)
    types = ["text", "text", "text", f"vector({dimension})", "text", "text", "sparsevec", "int8"][: len(columns)]
    with raw.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE embedkit_staging ("
            + ", ".join(f"{c} {t}" for c, t in zip(columns, types))
            + ") ON COMMIT DROP"
        )
        with cursor.copy("COPY embedkit_staging FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types([t.split("(")[0] for t in types])
            for row in rows:
                copy.write_row(row)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
        cursor.execute(
            f'INSERT INTO "{table}" ({", ".join(columns)}) '
            f"SELECT {', '.join('metadata::jsonb' if c == 'metadata' else c for c in columns)} "
            f'FROM embedkit_staging ORDER BY id COLLATE "C" ON CONFLICT (id) DO UPDATE SET {updates}'
        )
        cursor.execute("DROP TABLE embedkit_staging")


def upsert(conn, table: sa.Table, dimension: int, values: list, uses_pgvector: bool, sparse: bool) -> None:
    """Insert or replace rows (id, text, metadata JSON, vector, doc, span, and with ``sparse`` a pgvector
    ``SparseVector`` and its sid), by COPY when they are many and pgvector holds the vectors (inside the caller's
    transaction)."""

    def vector(v):
        return v if uses_pgvector else v.astype("<f4").tobytes()

    rows = [(i, t, m, vector(v), d, dump_span(s), *r) for i, t, m, v, d, s, *r in values]
    if uses_pgvector and len(rows) >= COPY_ROWS:
        copy_upsert(conn, table.name, dimension, rows, sparse)
        return
    columns = row_columns(sparse)
    keys = ["metadata_json" if c == "metadata" else c for c in columns]  # the JSON text, cast in the statement
    stmt = postgresql.insert(table).values(
        metadata=sa.cast(sa.bindparam("metadata_json", type_=sa.Text), postgresql.JSONB)
    )
    conn.execute(
        stmt.on_conflict_do_update(index_elements=["id"], set_={k: stmt.excluded[k] for k in columns[1:]}),
        [dict(zip(keys, row)) for row in rows],
    )


def document_text(table: sa.Table):
    """A row's text, a later chunk's being its document's (read in the same statement, so from one snapshot)."""
    c, head = table.c, table.alias("head")
    return sa.case((c.doc.is_(None), c.text), else_=sa.select(head.c.text).where(head.c.id == c.doc).scalar_subquery())


def delete_chunks_beyond(conn, table: str, heads: list[tuple[str, int]]) -> None:
    """Remove chunks n >= count of each (document id, count): what an earlier load left and this one will not
    write (so writers of one load, each holding part of a document's chunks, never delete each other's)."""
    if heads:
        docs, counts = map(list, zip(*heads))
        conn.exec_driver_sql(
            f'DELETE FROM "{table}" AS t USING unnest(%(docs)s::text[], %(counts)s::int[]) AS h(doc, n) '
            "WHERE t.doc = h.doc AND substr(t.id, length(h.doc) + 2)::int >= h.n",
            {"docs": docs, "counts": counts},
        )


class Found(NamedTuple):
    """A row as the search reads it."""

    id: str
    text: str
    metadata: dict
    distance: float
    span: str | None
    embedding: object = None  # the stored vector, when asked for


class Searcher:
    """Searches one pgvector table. Each search is one round trip in autocommit (a single SELECT is its own
    read-only snapshot), with its statement compiled once per (filter, k).

    HNSW with a filter walks the graph until k rows pass, so it slows as the filter grows selective;
    scanning the matching rows exactly (through the GIN index) costs in proportion to how many match. The
    cost models cross near 2·sqrt(k·n) matching rows for n rows, so filters the planner estimates below
    that are searched exactly. Estimates are cached for a minute per filter.
    """

    def __init__(self, engine: sa.Engine, table: sa.Table):
        self.engine, self.table = engine, table
        self._statements: dict = {}
        self._estimates: dict = {}
        self._lock = threading.Lock()  # for the two caches: threads share a SQLIndex

    def search(self, vectors: np.ndarray, k: int, key: str | None, where, with_vectors: bool = False) -> list[list]:
        """Rows (id, text, metadata, distance, span, and embedding with ``with_vectors``) per query."""
        exact = key is not None and self._selective(key, k, where)
        sql, params = self._statement(key, k, where, exact, with_vectors)
        results = []
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            raw = conn.connection.driver_connection
            if 2 * k > EF_SEARCH:
                raw.execute(f"SET hnsw.ef_search = {min(1000, 2 * k)}")
            try:
                for vector in vectors:
                    rows = raw.execute(sql, {**params, "q": vector}).fetchall()
                    if len(rows) < k and not exact:
                        rows = self._exact_if_short(raw, sql, {**params, "q": vector}, rows, where)
                    results.append([Found(*r) for r in rows])
            finally:
                if 2 * k > EF_SEARCH:
                    raw.execute(f"SET hnsw.ef_search = {EF_SEARCH}")
        return results

    def _statement(self, key: str | None, k: int, where, exact: bool, with_vectors: bool) -> tuple[str, dict]:
        """The search as driver SQL and its bound filter values; the vector binds as ``%(q)s``. The exact
        variant orders by an expression the HNSW index cannot serve."""
        with self._lock:
            found = self._statements.get((key, k, exact, with_vectors))
        if found is None:
            c = self.table.c
            distance = c.embedding.op("<=>")(sa.bindparam("q"))
            order = distance + 0 if exact else distance
            columns = [c.id, document_text(self.table).label("text"), c.metadata, distance.label("distance"), c.span]
            query = sa.select(*columns, *([c.embedding] if with_vectors else [])).where(where).order_by(order)
            compiled = query.limit(k).compile(dialect=self.engine.dialect)
            found = str(compiled), dict(compiled.params)
            with self._lock:
                self._statements[(key, k, exact, with_vectors)] = found
                while len(self._statements) > 64:
                    self._statements.pop(next(iter(self._statements)))
        return found

    def _selective(self, key: str, k: int, where) -> bool:
        with self._lock:
            cached = self._estimates.get(key)
        if cached is None or time.monotonic() - cached[0] > 60:
            count = sa.select(sa.literal(1)).select_from(self.table).where(where).compile(dialect=self.engine.dialect)
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                raw = conn.connection.driver_connection
                plan = raw.execute("EXPLAIN (FORMAT JSON) " + str(count), dict(count.params)).fetchone()[0]
                total = raw.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (self.table.name,))
                total = max(float(total.fetchone()[0]), 0.0)
            cached = (time.monotonic(), plan[0]["Plan"]["Plan Rows"], total)
            with self._lock:
                self._estimates[key] = cached
                while len(self._estimates) > 256:
                    self._estimates.pop(next(iter(self._estimates)))
        _, matching, total = cached
        return matching <= 2 * (k * max(total, matching)) ** 0.5

    def _exact_if_short(self, raw, sql: str, params: dict, rows: list, where) -> list:
        """The HNSW scan ran short: if more rows match, scan exactly (read-only)."""
        with raw.transaction():
            raw.execute("SET TRANSACTION READ ONLY")
            count = sa.select(sa.func.count()).select_from(self.table).where(where).compile(dialect=self.engine.dialect)
            if raw.execute(str(count), dict(count.params)).fetchone()[0] > len(rows):
                raw.execute("SET LOCAL enable_indexscan = off")
                rows = raw.execute(sql, params).fetchall()
        return rows


def translate(exc: BaseException, where: str) -> Exception | None:
    """The error of this library's own that a psycopg (or SQLAlchemy-wrapped) error means: a server out of
    disk or memory, or one that cannot be reached or went away; None for any other error."""
    orig = getattr(exc, "orig", exc)
    if not type(orig).__module__.startswith("psycopg"):
        return None
    import psycopg

    state = getattr(orig, "sqlstate", None) or ""
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if state.startswith("53"):  # insufficient resources: disk_full, out_of_memory, too_many_connections
        return StorageError(f"{where}: the database server is out of resources ({first}); this call wrote nothing")
    if isinstance(orig, psycopg.OperationalError) and (not state or state.startswith("08") or state in LOST):
        return StorageError(
            f"{where}: the database server cannot be reached or went away ({first}); retry once it is back "
            "(adding the same ids again replaces, it does not double)"
        )
    return None


LOST = ("57P01", "57P02", "57P03")  # admin_shutdown, crash_shutdown, cannot_connect_now
