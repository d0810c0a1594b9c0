"""SQLIndex: documents in one SQL table, through SQLAlchemy 2.

- SQLite (the embedded default): WAL, a busy timeout and ``BEGIN IMMEDIATE`` writes; search is exact,
  over a cached matrix of the stored vectors that any write (from any process) invalidates.
- PostgreSQL with pgvector: a ``vector(d)`` column with an HNSW index (cosine ops); search and filters
  run in SQL, with filters on JSONB. Without the extension it falls back to the SQLite-style path.
"""

from __future__ import annotations

import json
import logging
import re
import threading

import numpy as np
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite

from .filters import Node
from .index import Hit, Index, Record, top_k

logger = logging.getLogger(__name__)

META_TABLE = "embedkit_meta"
CHUNK = 500  # ids per IN (...) clause


class SQLIndex(Index):
    """An Index stored in a SQL database: ``SQLIndex(model, "sqlite:///docs.db")``."""

    def __init__(self, encoder, url: str = "sqlite:///embedkit.db", table: str = "documents", **engine_kwargs):
        super().__init__(encoder)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", table or ""):
            raise ValueError(f"table must be a plain SQL identifier (letters, digits, _), got {table!r}")
        self.url = url
        self.engine = _engine(url, **engine_kwargs)
        self.dialect = self.engine.dialect.name
        self.table_name = table
        self.uses_pgvector = self.dialect == "postgresql" and _ensure_pgvector(self.engine)
        self._meta = sa.Table(
            META_TABLE,
            sa.MetaData(),
            sa.Column("table_name", sa.Text, primary_key=True),
            sa.Column("info", sa.Text, nullable=False),
            sa.Column("version", sa.BigInteger, nullable=False),
        )
        self._open()
        self._cache_lock = threading.Lock()
        self._cache: tuple[int, list[str], dict[str, int], np.ndarray] | None = None

    # ----------------------------------------------------------------- schema
    def _open(self) -> None:
        where = f"table {self.table_name!r} at {self.engine.url.render_as_string(hide_password=True)}"
        with self._begin() as conn:
            self._meta.create(conn, checkfirst=True)
            row = conn.execute(sa.select(self._meta.c.info).where(self._meta.c.table_name == self.table_name)).first()
            if row is None:
                info = dict(self.info, vector_column=self.uses_pgvector)
                conn.execute(
                    self._insert(self._meta).on_conflict_do_nothing(),
                    {"table_name": self.table_name, "info": json.dumps(info), "version": 0},
                )
                row = conn.execute(
                    sa.select(self._meta.c.info).where(self._meta.c.table_name == self.table_name)
                ).first()
            stored = json.loads(row.info)
            self.check_info(stored, where)
            self.uses_pgvector = bool(stored.get("vector_column")) and self.dialect == "postgresql"
            self.table = self._documents_table()
            self.table.create(conn, checkfirst=True)
            if self.uses_pgvector:
                conn.execute(
                    sa.text(
                        f'CREATE INDEX IF NOT EXISTS "{self.table_name}_embedding_hnsw" ON "{self.table_name}" '
                        "USING hnsw (embedding vector_cosine_ops)"
                    )
                )
        if self.dialect == "postgresql" and not self.uses_pgvector:
            logger.warning("%s: pgvector is not available; using exact search over cached vectors", where)

    def _documents_table(self) -> sa.Table:
        if self.uses_pgvector:
            from pgvector.sqlalchemy import Vector

            embedding, metadata = Vector(self.dimension), postgresql.JSONB
        else:
            embedding, metadata = sa.LargeBinary, (postgresql.JSONB if self.dialect == "postgresql" else sa.Text)
        return sa.Table(
            self.table_name,
            sa.MetaData(),
            sa.Column("id", sa.Text, primary_key=True),
            sa.Column("text", sa.Text, nullable=False),
            sa.Column("metadata", metadata, nullable=False),
            sa.Column("embedding", embedding, nullable=False),
        )

    def _begin(self):
        """A write transaction (BEGIN IMMEDIATE on SQLite)."""
        return self.engine.execution_options(embedkit_write=True).begin()

    def _insert(self, table):
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def _bump_version(self, conn) -> None:
        conn.execute(
            sa.update(self._meta)
            .where(self._meta.c.table_name == self.table_name)
            .values(version=self._meta.c.version + 1)
        )

    # ----------------------------------------------------------------- writes
    def _write(self, ids, texts, metadatas, vectors) -> None:
        rows = [
            {"id": i, "text": t, "metadata": self._dump_metadata(m), "embedding": self._dump_vector(v)}
            for i, t, m, v in zip(ids, texts, metadatas, vectors)
        ]
        stmt = self._insert(self.table)
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={c: stmt.excluded[c] for c in ("text", "metadata", "embedding")},
        )
        with self._begin() as conn:
            conn.execute(stmt, rows)
            self._bump_version(conn)

    def _delete(self, ids) -> int:
        deleted = 0
        with self._begin() as conn:
            for chunk in _chunks(ids):
                deleted += conn.execute(sa.delete(self.table).where(self.table.c.id.in_(chunk))).rowcount
            if deleted:
                self._bump_version(conn)
        return deleted

    def _dump_metadata(self, metadata: dict):
        return metadata if self.dialect == "postgresql" else json.dumps(metadata)

    def _dump_vector(self, vector: np.ndarray):
        return vector if self.uses_pgvector else vector.astype("<f4").tobytes()

    def _load_metadata(self, value) -> dict:
        return json.loads(value) if isinstance(value, str) else value

    # ----------------------------------------------------------------- reads
    def __len__(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(self.table)).scalar_one()

    def _get(self, ids) -> list[Record]:
        with self.engine.connect() as conn:
            found = {r.id: r for r in self._get_in(conn, ids)}
        return [found[i] for i in ids if i in found]

    def _vectors(self, ids) -> dict[str, np.ndarray]:
        c = self.table.c
        found = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(ids):
                for row in conn.execute(sa.select(c.id, c.embedding).where(c.id.in_(chunk))):
                    found[row.id] = self._load_vector(row.embedding)
        return found

    def _load_vector(self, value) -> np.ndarray:
        if isinstance(value, (bytes, memoryview)):
            return np.frombuffer(bytes(value), dtype="<f4").astype(np.float32)
        return np.asarray(value, dtype=np.float32)

    def _search(self, vectors, k, node: Node | None) -> list[list[Hit]]:
        if self.uses_pgvector:
            return [self._search_pgvector(v, k, node) for v in vectors]
        return self._search_cached(vectors, k, node)

    def _search_pgvector(self, vector: np.ndarray, k: int, node: Node | None) -> list[Hit]:
        c = self.table.c
        distance = c.embedding.cosine_distance(vector)
        where = self._where(node)
        query = sa.select(c.id, c.text, c.metadata, distance.label("distance")).where(where).order_by(distance).limit(k)
        with self._begin() as conn:
            conn.execute(sa.select(sa.func.set_config("hnsw.ef_search", str(min(1000, max(40, 2 * k))), True)))
            conn.execute(sa.select(sa.func.set_config("hnsw.iterative_scan", "strict_order", True)))
            rows = conn.execute(query).all()
            if len(rows) < k:
                # The HNSW scan ran short: if more documents match, fall back to an exact scan.
                matching = conn.execute(sa.select(sa.func.count()).select_from(self.table).where(where)).scalar_one()
                if matching > len(rows):
                    conn.execute(sa.select(sa.func.set_config("enable_indexscan", "off", True)))
                    rows = conn.execute(query).all()
        return [Hit(r.id, r.text, r.metadata, 1.0 - float(r.distance)) for r in rows]

    def _search_cached(self, vectors, k, node: Node | None) -> list[list[Hit]]:
        with self.engine.connect() as conn, conn.begin():
            version, ids, positions, matrix = self._cached_matrix(conn)
            if node is not None:
                allowed = [
                    positions[r.id]
                    for r in conn.execute(sa.select(self.table.c.id).where(self._where(node)))
                    if r.id in positions
                ]
                rows = np.asarray(sorted(allowed), dtype=np.int64)
                matrix = matrix[rows]
            else:
                rows = None
            scores, idx = top_k(matrix, vectors, k)
            if rows is not None:
                idx = rows[idx]
            wanted = [[ids[j] for j in row] for row in idx]
            records = {r.id: r for r in self._get_in(conn, sorted({i for row in wanted for i in row}))}
        return [
            [Hit(i, records[i].text, records[i].metadata, float(s)) for i, s in zip(row, srow)]
            for row, srow in zip(wanted, scores)
        ]

    def _get_in(self, conn, ids) -> list[Record]:
        c = self.table.c
        out = []
        for chunk in _chunks(ids):
            out += [
                Record(r.id, r.text, self._load_metadata(r.metadata))
                for r in conn.execute(sa.select(c.id, c.text, c.metadata).where(c.id.in_(chunk)))
            ]
        return out

    def _cached_matrix(self, conn):
        """(version, ids, id -> row, normalized matrix), reloaded when any writer bumped the version."""
        version = conn.execute(
            sa.select(self._meta.c.version).where(self._meta.c.table_name == self.table_name)
        ).scalar_one()
        with self._cache_lock:
            if self._cache is None or self._cache[0] != version:
                ids, blobs = [], []
                for row in conn.execute(sa.select(self.table.c.id, self.table.c.embedding)):
                    ids.append(row.id)
                    blobs.append(row.embedding)
                matrix = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(ids), self.dimension)
                self._cache = (version, ids, {i: n for n, i in enumerate(ids)}, matrix)
            return self._cache

    def _where(self, node: Node | None):
        from .sql_filters import compile_filter

        return sa.true() if node is None else compile_filter(node, self.table.c.metadata, self.dialect)

    def close(self) -> None:
        self.engine.dispose()


def _chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _engine(url: str, **kwargs) -> sa.Engine:
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"url must be a SQLAlchemy URL such as 'sqlite:///docs.db', got {url!r}")
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    elif engine.dialect.name != "postgresql":
        raise ValueError(f"SQLIndex supports SQLite and PostgreSQL, not {engine.dialect.name!r}")
    return engine


def _configure_sqlite(engine: sa.Engine) -> None:
    """WAL, a 60 s busy timeout, and BEGIN IMMEDIATE for writes so concurrent writers queue instead of failing."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let SQLAlchemy's begin event issue BEGIN
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA busy_timeout = 60000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("embedkit_write") else "BEGIN")


def _ensure_pgvector(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        try:
            with conn.begin():
                conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
        except sa.exc.DBAPIError as exc:
            logger.info("Could not create the vector extension: %s", exc.orig)
        return conn.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")).first() is not None
