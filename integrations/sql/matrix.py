"""Exact search where the database cannot search vectors itself (SQLite, PostgreSQL without pgvector).

A matrix follows the table (``vector_cache``: on SQLite over the table's mapped segments, ``segments``,
through the change log of ``sqlite_changes``; on PostgreSQL by reloading when the table's version moved),
and the rows matching each recent filter are kept in step with it (``integrations._shared.filter_cache``).
Each search brings both up to date and reads its hits inside one read transaction, so a hit's text,
metadata and span belong together.
"""

from __future__ import annotations

import threading

import numpy as np
import sqlalchemy as sa

from integrations._shared import sqlite_files
from integrations._shared.codec import load_span
from integrations._shared.filter_cache import MatchCache
from integrations.filters.parse import Node, filter_key
from integrations.records import Hit
from integrations.sql import segments, sqlite_changes
from integrations.sql.segments import Segments
from integrations.sql.vector_cache import VectorCache


class MatrixSearch:
    """Searches ``table`` (of ``dimension``-d vectors) through ``engine``. ``key`` names the table in the
    change log and in ``meta`` (the settings table, whose ``version`` moves on PostgreSQL writes); ``label``
    names it in messages. ``where(node)`` compiles a filter, ``in_(column, ids)`` tests membership with one
    parameter and ``load_metadata(row)`` parses a row's metadata: the SQLIndex's own, so that both search
    paths filter and report alike."""

    def __init__(
        self,
        engine: sa.Engine,
        table: sa.Table,
        dimension: int,
        label: str,
        *,
        key,
        meta,
        where,
        in_,
        load_metadata,
        segments: Segments | None,
        begin,
    ):
        self.engine, self.table, self.key, self.meta = engine, table, key, meta
        self.segments, self.begin = segments, begin
        self.where, self.in_, self.load_metadata = where, in_, load_metadata
        self.sqlite = engine.dialect.name == "sqlite"
        self.cache = VectorCache(dimension, label)
        self.matches = MatchCache()
        self.lock = threading.Lock()
        self.ids: list[str] = []  # PostgreSQL: the id at each matrix position

    def search(self, vectors: np.ndarray, k: int, node: Node | None, with_vectors: bool) -> list[list[Hit]]:
        with self.engine.connect() as conn, conn.begin(), self.lock:
            self._refresh(conn)
            allowed = None
            if node is not None:
                allowed = self.matches.get(
                    filter_key(node), self.cache.state, self._run(conn, node), self._touched(conn)
                ).keys
            scores, keys = self.cache.search(vectors, k, allowed)
            records = self._by_key(conn, np.unique(keys))
            stored = self.cache.vectors(keys) if with_vectors else None  # the matrix this search read
        hits = [
            [Hit(*records[key][:3], float(s), span=records[key][3]) for key, s in zip(krow, srow)]
            for krow, srow in zip(keys.tolist(), scores)
        ]
        if stored is not None:
            for row, found in zip(hits, stored):
                for hit, vector in zip(row, found):
                    hit.vector = vector.copy()
        return hits

    def save(self, force: bool) -> None:
        """Write the rows changed since the table's segments as a new segment, once there are enough of them
        (any, with ``force``): see ``integrations.sql.segments``."""
        if self.segments is None:
            return
        with self.lock:
            with self.engine.connect() as conn, conn.begin():
                if self.cache.state is None and not force:  # a table too small for a segment is not read
                    top = conn.exec_driver_sql(f'SELECT coalesce(max(rowid), 0) FROM "{self.table.name}"').scalar()
                    if top < segments.SEAL_ROWS:
                        return
                self._refresh(conn)
            self.segments.save(self.begin, self.cache, force)

    def _refresh(self, conn) -> None:
        """Bring the cached matrix up to the table (inside the caller's read transaction)."""
        if self.sqlite:
            if self.cache.state is None and self.segments is not None:
                self.segments.load(conn, self.cache)
            sqlite_changes.follow(conn, self.table, self.key, self.cache)
            return
        # PostgreSQL without pgvector: no rowids to follow, so reload when the version moved, keyed by position
        meta = self.meta.c
        version = conn.execute(sa.select(meta.version).where(meta.table_name == self.key)).scalar_one()
        if version != self.cache.version:
            c = self.table.c
            rows = conn.execute(sa.select(c.id, c.embedding).order_by(c.id)).all()
            self.ids = [r.id for r in rows]
            self.cache.reset([(n, r.id, r.embedding) for n, r in enumerate(rows)], (len(rows), int(version)))
            self.cache.version = version
            self.matches.clear()

    def _touched(self, conn):
        if not self.sqlite:
            return lambda seq: None  # the match cache then evaluates the filter afresh
        return lambda seq: sqlite_changes.touched(conn, self.key, seq)

    def _run(self, conn, node: Node):
        where = self.where(node)
        if self.sqlite:
            return lambda after, changed: sqlite_changes.matching(
                conn, self.table, self.key, node, where, after, changed
            )
        position = {i: n for n, i in enumerate(self.ids)}  # the fallback without pgvector maps ids
        return lambda after, changed: np.fromiter(
            (position[r.id] for r in conn.execute(sa.select(self.table.c.id).where(where))), np.int64
        )

    def _by_key(self, conn, keys: np.ndarray) -> dict[int, tuple]:
        """key -> (id, text, metadata, span) for the cache's row keys; a later chunk's text is its
        document's, read in the caller's transaction."""
        c, head = self.table.c, self.table.alias("head")
        query = sa.select(c.id, head.c.text, c.metadata, c.span).join_from(
            self.table, head, head.c.id == sa.func.coalesce(c.doc, c.id)
        )
        if not self.sqlite:
            ids = {self.ids[k]: k for k in keys.tolist()}
            rows = conn.execute(query.where(self.in_(c.id, list(ids))))
            return {ids[r.id]: (r.id, r.text, self.load_metadata(r), load_span(r.span)) for r in rows}
        rowid = sa.literal_column(f'"{self.table.name}".rowid')
        rows = conn.execute(query.add_columns(rowid.label("key")).where(rowid.in_(sqlite_files.json_ints(keys))))
        return {r.key: (r.id, r.text, self.load_metadata(r), load_span(r.span)) for r in rows}
