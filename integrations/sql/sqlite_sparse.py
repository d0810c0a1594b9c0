"""The sparse leg of SQLIndex on SQLite: the rows' sparse vectors in the tables of ``integrations.sparse``,
keyed by the rows' rowids, in the same file and the writer's own transaction. A trigger drops a deleted
row's vector in the deleting transaction, whoever deletes it; an upsert keeps a row's rowid and replaces
its vector.
"""

from __future__ import annotations

import json

import numpy as np
import sqlalchemy as sa

from integrations._shared.codec import load_span
from integrations._shared.sqlite_files import json_values
from integrations.sparse import SparseTables, Vector, as_dict
from integrations.sql import sqlite_changes

ROWID = sa.literal_column("rowid")


def tables(conn, key: str) -> SparseTables:
    return SparseTables(conn.connection.driver_connection, f"embedkit_sparse_{key}")


def create(conn, table: str, key: str) -> None:
    """The sparse tables of table ``table`` (its lower-case ``key``), and the trigger that keeps them in step."""
    sparse = tables(conn, key)
    sparse.create()
    conn.exec_driver_sql(
        f'CREATE TRIGGER IF NOT EXISTS "{key}_embedkit_sparse_ad" AFTER DELETE ON "{table}" '
        f"BEGIN DELETE FROM {sparse.prefix}_rows WHERE key = old.rowid; END"
    )


def write(conn, table: sa.Table, key: str, ids: list[str], vectors: list[Vector]) -> None:
    """Store the sparse vectors of the rows ``ids`` (just written, inside the write)."""
    rowids = dict(conn.execute(sa.select(table.c.id, ROWID).where(table.c.id.in_(json_values(ids)))).all())
    tables(conn, key).write([rowids[i] for i in ids], vectors)


def adopt(conn, leg, stored: dict, table: sa.Table, key: str, meta: sa.Table, where: str) -> None:
    """Check the index's ``SparseLeg`` against its settings ``stored``; start keeping sparse vectors when it
    brings an encoder to an empty table (inside the opening transaction)."""
    record = leg.adopt(
        stored.get("sparse"), lambda: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar(), where
    )
    if record is not None:
        create(conn, table.name, key)
        stored["sparse"] = record
        conn.execute(sa.update(meta).where(meta.c.table_name == key).values(info=json.dumps(stored)))


def hits(conn, table: sa.Table, key: str, vector: Vector, k: int, node, where, reader, with_vectors: bool) -> list:
    """The ``k`` best rows by sparse dot product that match ``node`` (compiled: ``where``), best first, as
    hits (``reader``: the index's RowReader); with ``with_vectors``, each with its dense and sparse vector."""
    found = search(conn, table, key, vector, k, node, where)
    out = [reader.hit(row, score, load_span(row.span), with_vectors) for row, score in found]
    if with_vectors:
        stored = tables(conn, key).vectors([row.key for row, _ in found])
        for hit, (row, _) in zip(out, found):
            hit.sparse_vector = as_dict(stored[row.key])
    return out


def search(conn, table: sa.Table, key: str, vector: Vector, k: int, node, where) -> list:
    """Rows (key, id, text, metadata, span, embedding, score) of the ``k`` best rows by sparse dot product
    that match ``node`` (compiled: ``where``), best first; a later chunk's text is its document's."""
    allowed = None
    if node is not None:
        allowed = sqlite_changes.matching(conn, table, key, node, where, None, np.zeros(0, np.int64))
    found = tables(conn, key).search(vector, k, allowed)
    if not found:
        return []
    c, head = table.c, table.alias("head")
    rowid = sa.literal_column(f'"{table.name}".rowid')
    query = (
        sa.select(rowid.label("key"), c.id, head.c.text, c.metadata, c.span, c.embedding)
        .join_from(table, head, head.c.id == sa.func.coalesce(c.doc, c.id))
        .where(rowid.in_(json_values([f for f, _ in found])))
    )
    rows = {r.key: r for r in conn.execute(query)}
    return [(rows[f], score) for f, score in found if f in rows]


def vectors(conn, table: sa.Table, key: str, ids: list[str]) -> dict[str, dict[int, float]]:
    """id -> the sparse vector of the rows ``ids``, as {dimension: weight}."""
    rowids = dict(conn.execute(sa.select(ROWID, table.c.id).where(table.c.id.in_(json_values(ids)))).all())
    found = tables(conn, key).vectors(list(rowids)) or {}
    return {rowids[r]: as_dict(v) for r, v in found.items()}
