"""The sparse leg of SQLIndex on PostgreSQL, written in the transaction that writes the rows:

- each row's learned sparse vector in a pgvector ``sparsevec`` column of its own row (``sparse``), and in
  ``sparse_sid`` a number from the table's sequence, given out anew whenever the row is written;
- a postings table ``(dim, first, sids, weights)``: per dimension and per write, the sids that have it
  (int64 bytes) and their weights (float32 bytes), ``first`` being the write's first sid: a few thousand
  rows for a write of 5,000 documents (the blocks of ``integrations.sparse``, as SQLite keeps them).

A search sums the postings of the query's dimensions here and reads the best rows back by ``sparse_sid``:
the old postings of a deleted or rewritten row meet no row, so the top k is exact, and its cost follows
the postings of the query's dimensions, not the size of the table. ``compact`` drops the postings that meet no
row. A table written before the postings existed gets them when it is opened (in the opening transaction).

Every vector has pgvector's largest dimension count, so any vocabulary fits and any two vectors compare;
a vector holds at most pgvector's 16,000 active dimensions (a SPLADE document has a few hundred).
"""

from __future__ import annotations

import json

import numpy as np
import sqlalchemy as sa

from integrations._shared.codec import int_keys, load_span
from integrations.errors import InvalidInputError
from integrations.sparse import Vector, add_up, as_dict, blocks, pruned
from integrations.sql.postgres import document_text, index_name

COLUMN = "sparse"
DIMENSIONS = 1_000_000_000  # pgvector's SPARSEVEC_MAX_DIM
MAX_ACTIVE = 16_000  # pgvector's SPARSEVEC_MAX_NNZ


def names(table: str) -> tuple[str, str]:
    """The postings table and the sid sequence of ``table``."""
    return index_name(table, "sparse_postings"), index_name(table, "sparse_sids")


def adopt(conn, leg, stored: dict, table: sa.Table, meta: sa.Table, key: str, uses_pgvector: bool, where: str) -> None:
    """Check the index's ``SparseLeg`` against its settings ``stored``; give ``table`` its sparse columns and
    postings when the leg brings an encoder to an empty table, or when a table kept sparse vectors before
    postings existed (inside the opening transaction)."""
    if leg.encoder is not None and not (uses_pgvector and has_sparsevec(conn)):
        raise ValueError(f"{where}: a sparse leg on PostgreSQL needs pgvector 0.7 or later (its sparsevec type)")
    count = lambda: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()  # noqa: E731
    record = leg.adopt(stored.get("sparse"), count, where)
    if record is not None:
        conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN IF NOT EXISTS {COLUMN} sparsevec')
        stored["sparse"] = record
        conn.execute(sa.update(meta).where(meta.c.table_name == key).values(info=json.dumps(stored)))
    if leg.recorded is not None:
        _create_postings(conn, table.name)


def _create_postings(conn, table: str) -> None:
    postings, sequence = names(table)
    if conn.execute(sa.text("SELECT to_regclass(:p)"), {"p": postings}).scalar() is not None:
        return
    conn.exec_driver_sql(f'ALTER TABLE "{table}" ADD COLUMN IF NOT EXISTS sparse_sid bigint')
    conn.exec_driver_sql(f"CREATE SEQUENCE IF NOT EXISTS {sequence}")
    conn.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {postings} (dim integer NOT NULL, first bigint NOT NULL, "
        "sids bytea NOT NULL, weights bytea NOT NULL, PRIMARY KEY (dim, first))"
    )
    conn.exec_driver_sql(f'CREATE INDEX IF NOT EXISTS {index_name(table, "sparse_sid")} ON "{table}" (sparse_sid)')
    _post_stored_vectors(conn, table)


def _post_stored_vectors(conn, table: str) -> None:
    """Give the rows that have a sparse vector but no sid one, and post their vectors (a table written by
    the version before postings)."""
    from pgvector.sqlalchemy import SPARSEVEC

    rows = sa.table(table, sa.column("id"), sa.column(COLUMN, SPARSEVEC()), sa.column("sparse_sid", sa.BigInteger))
    found = conn.execute(
        sa.select(rows.c.id, rows.c.sparse).where(rows.c.sparse.is_not(None), rows.c.sparse_sid.is_(None))
    ).all()
    if found:
        sids = post(conn, table, [from_pg_vector(r.sparse) for r in found])
        conn.execute(
            sa.update(rows).where(rows.c.id == sa.bindparam("row_id")).values(sparse_sid=sa.bindparam("sid")),
            [{"row_id": r.id, "sid": int(s)} for r, s in zip(found, sids)],
        )


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


def from_pg_vector(value) -> Vector:
    return np.asarray(value.indices(), np.int32), np.asarray(value.values(), np.float32)


def with_sids(conn, table: str, values: list) -> list:
    """Rows to upsert whose last value is a sparse vector, that vector as a ``SparseVector`` followed by
    the row's new sid, its postings written (inside the write)."""
    vectors = [v[-1] for v in values]
    pg = [to_pg(v) for v in vectors]  # refuse what PostgreSQL cannot hold before writing anything
    sids = post(conn, table, vectors)
    return [(*v[:-1], p, int(s)) for v, p, s in zip(values, pg, sids)]


def post(conn, table: str, vectors: list[Vector]) -> np.ndarray:
    """New sids for ``vectors``, and the postings of the vectors under them (inside the write)."""
    postings, sequence = names(table)
    query = sa.text(f"SELECT nextval('{sequence}') FROM generate_series(1, :n)")
    sids = np.sort(np.fromiter(conn.execute(query, {"n": len(vectors)}).scalars(), np.int64, len(vectors)))
    first = int(sids[0]) if len(sids) else 0
    with conn.connection.driver_connection.cursor() as cursor:  # binary COPY: a write posts thousands of blocks
        with cursor.copy(f"COPY {postings} (dim, first, sids, weights) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "int8", "bytea", "bytea"])
            for dim, owners, weights in blocks(sids, vectors):
                copy.write_row((dim, first, owners, weights))
    return sids


def hits(conn, table: sa.Table, vector: Vector, k: int, node, where, reader, with_vectors: bool) -> list:
    """The ``k`` rows matching ``node`` (compiled: ``where``) with the largest dot product with ``vector``,
    best first, ties by id (code point order), as hits (``reader``: the index's RowReader; a later chunk's
    text is its document's); with ``with_vectors``, each with its dense and sparse vector. Rows that share
    no dimension with it are not found. One snapshot: the postings of the query's dimensions are summed
    here, a filter's rows are read as sids, and only the best are read back, in rounds until the k-th
    live row scores above every sid left out."""
    weight = dict(zip(vector[0].tolist(), vector[1].tolist()))
    if not weight or k <= 0:
        return []
    conn = conn.execution_options(isolation_level="REPEATABLE READ")
    c, postings = table.c, names(table.name)[0]
    query = sa.text(f"SELECT dim, sids, weights FROM {postings} WHERE dim = ANY(CAST(:dims AS integer[]))")
    found = conn.execute(query, {"dims": list(weight)}).all()
    if not found:
        return []
    sids, scores = add_up([(d, bytes(s), bytes(w)) for d, s, w in found], weight)
    if node is not None:
        keep = np.isin(sids, int_keys(conn.execute(sa.select(c.sparse_sid).where(where, c.sparse_sid.is_not(None)))))
        sids, scores = sids[keep], scores[keep]
    order = np.lexsort((sids, -scores))
    extra = [c.embedding, c.sparse] if with_vectors else []
    columns = [c.id, document_text(table).label("text"), c.metadata, c.span, c.sparse_sid, *extra]
    limit = max(4 * k, 64)
    while True:
        best = order[:limit]
        score_of = dict(zip(sids[best].tolist(), scores[best].tolist()))
        rows = conn.execute(sa.select(*columns).where(c.sparse_sid.in_(list(score_of)))).all()
        ranked = sorted(((score_of[r.sparse_sid], r) for r in rows), key=lambda f: (-f[0], f[1].id))[:k]
        if len(best) == len(order) or (len(ranked) == k and ranked[-1][0] > score_of[int(sids[best[-1]])]):
            break
        limit *= 4
    out = []
    for score, row in ranked:
        hit = reader.hit(row, score, load_span(row.span), with_vectors)
        hit.sparse_vector = as_dict(from_pg_vector(row.sparse)) if with_vectors else None
        out.append(hit)
    return out


def compact(conn, table: str) -> None:
    """Drop the postings of rows deleted or written again (inside a write). The blocks are read before the
    live sids, so a block committed meanwhile by another writer is not touched, and a sid missing from the
    live ones is gone for good."""
    postings = names(table)[0]
    blocks_read = conn.execute(sa.text(f"SELECT dim, first, sids, weights FROM {postings}")).all()
    live = np.sort(int_keys(conn.execute(sa.text(f'SELECT sparse_sid FROM "{table}" WHERE sparse_sid IS NOT NULL'))))
    for dim, first, sids, weights in blocks_read:
        kept = pruned(bytes(sids), bytes(weights), live)
        key = {"dim": dim, "first": first}
        if kept is None:
            continue
        if kept[0]:
            update = f"UPDATE {postings} SET sids = :sids, weights = :weights WHERE dim = :dim AND first = :first"
            conn.execute(sa.text(update), {**key, "sids": kept[0], "weights": kept[1]})
        else:
            conn.execute(sa.text(f"DELETE FROM {postings} WHERE dim = :dim AND first = :first"), key)


def vectors(conn, table: sa.Table, ids: list[str], in_) -> dict[str, dict[int, float]]:
    """id -> the sparse vector of the rows ``ids`` (``in_(column, ids)`` builds the condition)."""
    rows = conn.execute(sa.select(table.c.id, table.c.sparse).where(in_(table.c.id, ids), table.c.sparse.is_not(None)))
    return {r.id: as_dict(from_pg_vector(r.sparse)) for r in rows}
