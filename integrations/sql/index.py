"""SQLIndex: the store class; the design is in the package docstring (``integrations.sql``)."""

from __future__ import annotations

import contextlib
import json
import logging

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from integrations._shared import sqlite_files
from integrations._shared.chunk_rows import Rows
from integrations._shared.codec import dump_span, load_span
from integrations._shared.passages import spans_by_document
from integrations.errors import CorruptIndexError, NotAnIndexError, UnknownIdsError
from integrations.filters import postings
from integrations.filters.parse import Node, filter_key
from integrations.filters.to_sql import compile_filter
from integrations.index import Index, guarded
from integrations.keyword import fts5, pg_bm25
from integrations.records import Hit, Record
from integrations.sql import engines, pg_sparse, postgres, segments, sqlite_changes, sqlite_sparse
from integrations.sql.engines import check_exists, check_table_name, ensure_pgvector, make_engine, meta_table
from integrations.sql.matrix import MatrixSearch
from integrations.sql.rows import RowReader

logger = logging.getLogger(__name__)

FORMAT = 2  # 2: metadata stored with non-ASCII characters as they are (SQLite's JSON paths need that)


class SQLIndex(Index):
    """An Index stored in one table of a SQL database: ``SQLIndex(model, "sqlite:///docs.db")``.

    - ``url``: a SQLAlchemy URL, ``sqlite:///file.db`` or ``postgresql+psycopg://user@host/db``.
    - ``table``: the table's name, a plain identifier (several indexes can share a database).
    - ``create``: with False, a database or table that does not exist yet is an IndexNotFoundError instead of
      a new empty index.
    - ``chunk_tokens``, ``chunk_overlap``: how long texts are split (see ``Index``).
    - ``sparse_encoder``: a ``SparseEncoder`` for a sparse leg (given to a new table; on PostgreSQL it needs
      pgvector's ``sparsevec``).
    - ``engine_kwargs``: passed to ``sqlalchemy.create_engine`` (pool sizes, ``connect_args``, ...).

    Each write is one transaction. The package docstring (``integrations.sql``) tells how each database is
    searched.
    """

    def __init__(
        self,
        encoder,
        url: str = "sqlite:///embedkit.db",
        table: str = "documents",
        create: bool = True,
        chunk_tokens: int | None = None,
        chunk_overlap: int = 32,
        sparse_encoder=None,
        **engine_kwargs,
    ):
        super().__init__(encoder, chunk_tokens, chunk_overlap, sparse_encoder)
        check_table_name(table)
        self.url = url
        if not create:
            check_exists(url, table)
        self.engine = make_engine(url, **engine_kwargs)
        self.dialect = self.engine.dialect.name
        self.table_name = table
        # SQLite names are case-insensitive: Docs and docs are one table, so they share one meta row.
        self._key = table.lower() if self.dialect == "sqlite" else table
        self.where = f"table {table!r} at {self.engine.url.render_as_string(hide_password=True)}"
        self._rows = RowReader(self.where, self.dimension)
        self._meta = meta_table()
        try:
            with self._guard():
                self.uses_pgvector = self.dialect == "postgresql" and ensure_pgvector(self.engine)
                self._open()
        except BaseException:
            self.engine.dispose()
            raise
        self._matrix = MatrixSearch(
            self.engine,
            self.table,
            self.dimension,
            self.where,
            key=self._key,
            meta=self._meta,
            where=self._where,
            in_=self._in,
            load_metadata=self._rows.metadata,
            segments=segments.of_database(engines.sqlite_file(self.engine.url), self._key, self.dimension, self.where),
            begin=self._begin,
        )
        self._pg = postgres.Searcher(self.engine, self.table) if self.uses_pgvector else None
        self._bm25 = pg_bm25.PostgresBM25(self.table) if self.dialect == "postgresql" else None

    def _settings(self) -> dict:
        search = "pgvector" if self.uses_pgvector else "exact"
        return {"url": self.engine.url.render_as_string(hide_password=True), "table": self.table_name, "search": search}

    def _bytes_on_disk(self) -> int | None:
        """The SQLite file with its log and segments, or PostgreSQL's size of the table (its indexes and TOAST
        included)."""
        if self.dialect == "postgresql":
            return postgres.table_bytes(self.engine, self.table_name)
        return segments.bytes_on_disk(engines.sqlite_file(self.engine.url), self._key)

    # ----------------------------------------------------------------- schema
    def _open(self) -> None:
        with self._begin() as conn:
            if self.dialect == "postgresql":  # processes opening one table set it up one at a time
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"embedkit:{self.table_name}"))))
            elif sqlite_files.is_docstore(conn.connection.driver_connection):
                raise NotAnIndexError(
                    f"{self.engine.url.database} is a FaissIndex docstore; open its folder with FaissIndex "
                    "(nothing was written)"
                )
            self._meta.create(conn, checkfirst=True)
            meta = self._meta.c
            row = conn.execute(
                sa.select(meta.table_name, meta.info).where(sa.func.lower(meta.table_name) == self._key)
                if self.dialect == "sqlite"
                else sa.select(meta.table_name, meta.info).where(meta.table_name == self._key)
            ).first()
            if row is None:
                info = dict(self.encoder_info, vector_column=self.uses_pgvector, format=FORMAT)
                conn.execute(
                    self._insert(self._meta).on_conflict_do_nothing(),
                    {"table_name": self._key, "info": json.dumps(info), "version": 0},
                )
                row = conn.execute(sa.select(meta.table_name, meta.info).where(meta.table_name == self._key)).first()
            elif row.table_name != self._key:
                conn.execute(
                    sa.update(self._meta).where(meta.table_name == row.table_name).values(table_name=self._key)
                )
            try:
                stored = json.loads(row.info)
                assert isinstance(stored, dict)
            except (json.JSONDecodeError, AssertionError):
                raise CorruptIndexError(f"{self.where}: its settings in {self._meta.name} are damaged") from None
            self.check_info(stored, self.where)
            self.uses_pgvector = bool(stored.get("vector_column")) and self.dialect == "postgresql"
            table = engines.documents_table(self.table_name, self.dimension, self.dialect, self.uses_pgvector)
            table.create(conn, checkfirst=True)
            engines.add_chunk_columns(conn, self.table_name, self._key)
            self.table = table
            if self.dialect == "postgresql":
                pg_sparse.adopt(conn, self.sparse, stored, table, self._meta, self._key, self.uses_pgvector, self.where)
                if self.sparse.recorded is not None:
                    self.table = engines.documents_table(self.table_name, self.dimension, self.dialect, True, True)
                postgres.create_lookup_indexes(conn, self.table_name)
                pg_bm25.create_postgres(conn, self.table_name, postgres.index_name(self.table_name, "tsv"))
            if self.uses_pgvector:
                postgres.create_hnsw(conn, self.table_name)
            if self.dialect == "sqlite":
                sqlite_changes.create_log(conn, self.table_name, self._key)
                fts = fts5.fts_name(self._key)
                triggers, skip = f"{self._key}_embedkit_fts", sqlite_changes.skipping
                fts5.create_sqlite(conn.exec_driver_sql, fts, self.table_name, "rowid", triggers, skip(fts))
                posted = sqlite_changes.postings_name(self._key)
                postings.create_with_triggers(conn.exec_driver_sql, self.table_name, posted, skip(posted))
                sqlite_sparse.adopt(conn, self.sparse, stored, self.table, self._key, self._meta, self.where)
                if stored.get("format", 1) < FORMAT:
                    sqlite_changes.migrate_metadata(conn, self.table, self._rows.metadata)
                    stored["format"] = FORMAT
                    conn.execute(
                        sa.update(self._meta).where(meta.table_name == self._key).values(info=json.dumps(stored))
                    )
        if self.dialect == "postgresql" and not self.uses_pgvector:
            logger.warning("%s: pgvector is not available; using exact search over cached vectors", self.where)

    def _translate(self, exc: Exception) -> Exception | None:
        if self.dialect == "sqlite":
            return sqlite_files.translate(exc, self.where)
        return postgres.translate(exc, self.where) if self.dialect == "postgresql" else None

    def _check_batch(self, n: int, metadatas, ids) -> tuple[list[dict], list[str]]:
        metadatas, ids = super()._check_batch(n, metadatas, ids)
        if self.dialect == "postgresql":
            postgres.check_id_lengths(ids)
        return metadatas, ids

    def _begin(self):
        """A write transaction (BEGIN IMMEDIATE on SQLite)."""
        self._check_open()
        return self.engine.execution_options(embedkit_write=True).begin()

    def _insert(self, table):
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def _after_write(self, conn) -> None:
        """Inside a write: SQLite caches follow the change log, which is kept short here; PostgreSQL
        caches (without pgvector) reload when the version moves."""
        if self.dialect == "sqlite":
            sqlite_changes.prune(conn, self._key)
        else:
            conn.execute(
                sa.update(self._meta)
                .where(self._meta.c.table_name == self._key)
                .values(version=self._meta.c.version + 1)
            )

    # ----------------------------------------------------------------- writes
    def _write(self, rows: Rows) -> None:
        """Rows go in id order, so that concurrent writers lock them in one order and never deadlock; a
        document's head comes first, so a second writer of it waits there. Chunks the new version lacks
        are deleted after, by a statement that sees every write committed meanwhile (deleting first would
        leave a concurrent writer's extra chunks behind on PostgreSQL)."""
        c = self.table.c
        sparse = rows.sparse or []
        columns = (rows.ids, rows.texts, rows.metadata_json, rows.vectors, rows.docs, rows.spans)
        values = sorted(zip(*columns, *([sparse] if sparse else [])), key=lambda r: r[0])
        with self._begin() as conn:
            if rows.sparse is None and self._gained_sparse(conn):  # recorded by another instance since
                self.sparse.documents([], kept=True)
            if self.dialect == "sqlite":
                sqlite_changes.upsert(conn, self.table_name, self._key, [(*v[:5], dump_span(v[5])) for v in values])
                if rows.sparse is not None:
                    sqlite_sparse.write(conn, self.table, self._key, rows.ids, rows.sparse)
            else:
                if rows.sparse is not None:  # the sparsevec column's values and the rows' new sids, posted
                    values = pg_sparse.with_sids(conn, self.table_name, values)
                postgres.upsert(conn, self.table, self.dimension, values, self.uses_pgvector, rows.sparse is not None)
            conn.execute(sa.delete(self.table).where(self._in(c.doc, rows.heads), sa.not_(self._in(c.id, rows.ids))))
            self._after_write(conn)

    def _gained_sparse(self, conn) -> bool:
        """The table keeps sparse vectors though this instance opened it without."""
        if self.sparse.recorded is not None:
            return False
        if self.dialect == "sqlite":
            return sqlite_sparse.tables(conn, self._key).exist()
        return self.dialect == "postgresql" and pg_sparse.has_column(conn, self.table_name)

    def _delete(self, ids) -> int:
        c = self.table.c
        with self._begin() as conn:
            deleted = conn.execute(sa.delete(self.table).where(self._in(c.id, ids), c.doc.is_(None))).rowcount
            conn.execute(sa.delete(self.table).where(self._in(c.doc, ids)))
            if deleted:
                self._after_write(conn)
        return deleted

    def _delete_where(self, node: Node, ids) -> int:
        """Later chunks carry their document's metadata, so the filter finds them with it."""
        c, where = self.table.c, self._where(node)
        heads = sa.delete(self.table).where(where, c.doc.is_(None))
        later = sa.delete(self.table).where(where, c.doc.is_not(None))
        if ids is not None:
            heads, later = heads.where(self._in(c.id, ids)), later.where(self._in(c.doc, ids))
        with self._begin() as conn:
            deleted = conn.execute(heads).rowcount
            conn.execute(later)
            if deleted:
                self._after_write(conn)
        return deleted

    def _update_metadata(self, ids, metadatas) -> None:
        c = self.table.c
        with self._begin() as conn:
            found = set(conn.execute(sa.select(c.id).where(self._in(c.id, ids), c.doc.is_(None))).scalars())
            missing = [i for i in ids if i not in found]
            if missing:
                raise UnknownIdsError(f"unknown ids: {missing[:5]}")
            key = sa.bindparam("doc_id")
            new = self._metadata_param("new")
            update = sa.update(self.table).where(sa.or_(c.id == key, c.doc == key)).values(metadata=new)
            conn.execute(update, [{"doc_id": i, "new": m} for i, m in zip(ids, metadatas)])
            self._after_write(conn)

    @contextlib.contextmanager
    def bulk_load(self, maintenance_work_mem: str = "1GB"):
        """Load a large corpus fast: on PostgreSQL the HNSW index is dropped for the load and built once at
        the end, with ``maintenance_work_mem`` raised, then the table is analyzed. Searches during the load
        scan exactly. A no-op on SQLite, whose search needs no index."""
        with postgres.hnsw_built_after(self._begin, self.table_name, self.uses_pgvector, maintenance_work_mem):
            yield self

    def _metadata_param(self, name: str):
        """A bound parameter for metadata given as its JSON text (JSONB on PostgreSQL, the text on SQLite)."""
        param = sa.bindparam(name, type_=sa.Text)
        return sa.cast(param, postgresql.JSONB) if self.dialect == "postgresql" else param

    # ----------------------------------------------------------------- reads
    @guarded
    def __len__(self) -> int:
        self._check_open()
        with self.engine.connect() as conn:
            count = sa.select(sa.func.count()).select_from(self.table).where(self.table.c.doc.is_(None))
            return conn.execute(count).scalar_one()

    def _get(self, ids) -> list[Record]:
        c = self.table.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(c.id, c.text, c.metadata).where(self._in(c.id, ids)))
            found = {r.id: Record(r.id, r.text, self._rows.metadata(r)) for r in rows}
        return [found[i] for i in ids if i in found]

    def _select(self, node: Node | None, ids, limit, offset, after=None) -> list[Record]:
        c = self.table.c
        key = c.id if self.dialect == "sqlite" else c.id.collate("C")  # code-point order on both
        query = sa.select(c.id, c.text, c.metadata).where(self._where(node), c.doc.is_(None)).order_by(key)
        if ids is not None:
            query = query.where(self._in(c.id, ids))
        if after is not None:
            query = query.where(key > after)
        query = query.limit(limit).offset(offset or None)
        with self.engine.connect() as conn:
            return [Record(r.id, r.text, self._rows.metadata(r)) for r in conn.execute(query)]

    def _in(self, column, ids: list[str]):
        """``column IN ids`` with one bound parameter however many ids there are."""
        if self.dialect == "postgresql":
            return column == sa.any_(sa.bindparam(None, list(ids), type_=postgresql.ARRAY(sa.Text)))
        return column.in_(sqlite_files.json_values(list(ids)))

    def _chunk_spans(self, ids) -> dict[str, list[tuple[int, int]]]:
        c = self.table.c
        query = sa.select(c.id, c.doc, c.span).where(sa.or_(self._in(c.id, ids), self._in(c.doc, ids)))
        with self.engine.connect() as conn:
            return spans_by_document(conn.execute(query))

    def _vectors(self, ids) -> dict[str, np.ndarray]:
        c = self.table.c
        found = {}
        with self.engine.connect() as conn:
            for row in conn.execute(sa.select(c.id, c.embedding).where(self._in(c.id, ids))):
                found[row.id] = self._rows.vector(row)
        return found

    def _keyword(self, queries, k, node: Node | None, with_vectors) -> list[list[Hit]]:
        c = self.table.c
        where, extra = self._where(node), [c.span, c.embedding] if with_vectors else [c.span]
        with self._errors(), self.engine.connect() as conn:
            found = [
                self._bm25.search(conn, query, where, k, extra)
                if self._bm25
                else fts5.search(conn, self.table, self._key, query, None if node is None else where, k, extra)
                for query in queries
            ]
        return [[self._rows.hit(r, float(r.score), load_span(r.span), with_vectors) for r in rows] for rows in found]

    def _sparse(self, vector, k, node, with_vectors) -> list[Hit]:
        with self._errors(), self.engine.connect() as conn:
            where, reader = self._where(node), self._rows
            if self.dialect == "sqlite":
                return sqlite_sparse.hits(conn, self.table, self._key, vector, k, node, where, reader, with_vectors)
            return pg_sparse.hits(conn, self.table, vector, k, node, where, reader, with_vectors)

    def _sparse_vectors(self, ids) -> dict[str, dict[int, float]]:
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                return sqlite_sparse.vectors(conn, self.table, self._key, ids)
            return pg_sparse.vectors(conn, self.table, ids, self._in)

    def _search(self, vectors, k, node: Node | None, with_vectors) -> list[list[Hit]]:
        with self._errors():
            if self.uses_pgvector:
                key = None if node is None else filter_key(node)
                return [
                    [self._rows.hit(r, 1.0 - float(r.distance), load_span(r.span), with_vectors) for r in rows]
                    for rows in self._pg.search(vectors, k, key, self._where(node), with_vectors)
                ]
            return self._matrix.search(vectors, k, node, with_vectors)

    def _errors(self):
        """The database's own message, not 100 KB of SQL."""
        return engines.search_errors(self.where, self._translate)

    def _where(self, node: Node | None):
        return sa.true() if node is None else compile_filter(node, self.table.c.metadata, self.dialect)

    def save(self, force: bool = False) -> None:
        """Every write is durable when it returns. On a SQLite file, this also writes the rows changed since
        the table's segments as a new segment once there are 20,000 of them (any, with ``force``), so that
        reopening maps them instead of reading them (``integrations.sql.segments``); ``close()`` does too.
        With ``force``, it also drops the sparse postings of deleted and rewritten rows."""
        self._check_open()
        self._matrix.save(force)
        if force and self.sparse.recorded is not None:
            with self._begin() as conn:
                if self.dialect == "sqlite":
                    sqlite_sparse.tables(conn, self._key).compact()
                else:
                    pg_sparse.compact(conn, self.table_name)

    def close(self) -> None:
        if not self.closed:
            try:
                self._matrix.save(False)
            except Exception as exc:  # segments are derived: the table, which holds everything, is intact
                logger.warning("%s: new segments were not written (%s); the next open reads the table", self.where, exc)
            self.engine.dispose()
        super().close()
