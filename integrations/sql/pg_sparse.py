"""The sparse leg of SQLIndex on PostgreSQL: each row's learned sparse vector in a pgvector ``sparsevec``
column of its own row (``sparse``), written by the statement that writes the row, so deletes, upserts and
transactions need nothing more. A search ranks the matching rows by the exact inner product (pgvector's
``<#>``, a scan of the filtered rows: pgvector's approximate HNSW on sparse vectors would not give the exact
top k) in one SELECT.

Every vector has pgvector's largest dimension count, so any vocabulary fits and any two vectors compare;
a vector holds at most pgvector's 16,000 active dimensions (a SPLADE document has a few hundred).
"""

from __future__ import annotations

import json

import numpy as np
import sqlalchemy as sa

from integrations._shared.codec import load_span
from integrations.errors import InvalidInputError
from integrations.sparse import Vector, as_dict
from integrations.sql.postgres import document_text

COLUMN = "sparse"
DIMENSIONS = 1_000_000_000  # pgvector's SPARSEVEC_MAX_DIM
MAX_ACTIVE = 16_000  # pgvector's SPARSEVEC_MAX_NNZ


def adopt(conn, leg, stored: dict, table: sa.Table, meta: sa.Table, key: str, uses_pgvector: bool, where: str) -> None:
    """Check the index's ``SparseLeg`` against its settings ``stored``; give ``table`` its ``sparse`` column
    when the leg brings an encoder to an empty table (inside the opening transaction)."""
    if leg.encoder is not None and not (uses_pgvector and has_sparsevec(conn)):
        raise ValueError(f"{where}: a sparse leg on PostgreSQL needs pgvector 0.7 or later (its sparsevec type)")
    count = lambda: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()  # noqa: E731
    record = leg.adopt(stored.get("sparse"), count, where)
    if record is not None:
        conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN IF NOT EXISTS {COLUMN} sparsevec')
        stored["sparse"] = record
        conn.execute(sa.update(meta).where(meta.c.table_name == key).values(info=json.dumps(stored)))


def has_sparsevec(conn) -> bool:
    return conn.execute(sa.text("SELECT 1 FROM pg_type WHERE typname = 'sparsevec'")).first() is not None


def has_column(conn, table: str) -> bool:
    """The table keeps sparse vectors (another instance may have given it its leg since this one opened)."""
    # pg_attribute by the table's oid: one index lookup on each write (information_schema's view costs more)
    query = sa.text("SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(:t) AND attname = :c AND NOT attisdropped")
    return conn.execute(query, {"t": f'"{table}"', "c": COLUMN}).first() is not None


def to_pg(vector: Vector):
    """A (dimensions, weights) vector as pgvector's ``SparseVector``."""
    from pgvector import SparseVector

    dims, weights = vector
    if len(dims) > MAX_ACTIVE:
        raise InvalidInputError(
            f"a sparse vector has {len(dims)} active dimensions; PostgreSQL keeps at most {MAX_ACTIVE}"
        )
    if len(dims) and not 0 <= int(dims.min()) <= int(dims.max()) < DIMENSIONS:
        raise InvalidInputError(f"sparse dimensions must lie in [0, {DIMENSIONS}) on PostgreSQL")
    return SparseVector(as_dict(vector), DIMENSIONS)


def from_pg(value) -> dict[int, float]:
    return as_dict((np.asarray(value.indices(), np.int32), np.asarray(value.values(), np.float32)))


def hits(conn, table: sa.Table, vector: Vector, k: int, where, reader, with_vectors: bool) -> list:
    """The ``k`` rows matching ``where`` with the largest inner product with ``vector``, best first, as hits
    (``reader``: the index's RowReader; a later chunk's text is its document's); with ``with_vectors``, each
    with its dense and sparse vector. Rows whose product is 0 (no shared dimension) are not found."""
    from pgvector.sqlalchemy import SPARSEVEC

    c = table.c
    negative = c.sparse.op("<#>", return_type=sa.Float)(
        sa.bindparam("q", to_pg(vector), type_=SPARSEVEC)
    )  # minus the product
    extra = [c.embedding, c.sparse] if with_vectors else []
    query = (
        sa.select(c.id, document_text(table).label("text"), c.metadata, (-negative).label("score"), c.span, *extra)
        .where(where, c.sparse.is_not(None), negative != 0)
        .order_by(negative, c.id)
        .limit(k)
    )
    found = []
    for row in conn.execute(query):
        hit = reader.hit(row, float(row.score), load_span(row.span), with_vectors)
        hit.sparse_vector = from_pg(row.sparse) if with_vectors else None
        found.append(hit)
    return found


def vectors(conn, table: sa.Table, ids: list[str], in_) -> dict[str, dict[int, float]]:
    """id -> the sparse vector of the rows ``ids`` (``in_(column, ids)`` builds the condition)."""
    rows = conn.execute(sa.select(table.c.id, table.c.sparse).where(in_(table.c.id, ids), table.c.sparse.is_not(None)))
    return {r.id: from_pg(r.sparse) for r in rows}
