"""SQLite FTS5: the keyword index of SQLIndex on SQLite and of the FaissIndex docstore.

An external-content FTS5 table over the rows' text, kept in step by triggers in the writer's own
transaction, so it follows every add, upsert and delete, also those made without embedkit. Queries reach
it only as OR-ed, quoted words (``integrations.keyword.terms``), always as bound parameters.
"""

from __future__ import annotations

from types import SimpleNamespace

import sqlalchemy as sa

from integrations._shared.sqlite_files import json_values, keep_in_step
from integrations.keyword import terms
from integrations.keyword.terms import TOKENIZE


def fts_name(key: str) -> str:
    return f"embedkit_fts_{key}"


def create_sqlite(execute, fts: str, table: str, rowid: str, triggers: str | None, skip_insert: str | None):
    """An external-content FTS5 table ``fts`` over the ``text`` of ``table``, keyed by ``rowid`` and kept in
    step by the triggers ``<triggers>_ai/_ad/_au`` (``integrations._shared.sqlite_files.keep_in_step``: the
    insert trigger not while the SQL condition ``skip_insert`` holds, when the writer calls ``add_rows``,
    which costs a third of the trigger); with ``triggers`` and ``skip_insert`` None, the caller keeps it in
    step (a trigger costs more than the insert it makes, 2.5 times a direct insert). It is built from the
    existing rows when it is new. ``execute`` runs SQL with qmark parameters (a sqlite3 or SQLAlchemy
    connection's); the names are checked identifiers, so they can sit in the SQL."""
    exists = execute("SELECT 1 FROM sqlite_master WHERE name = ?", (fts,)).fetchone()
    execute(
        f'CREATE VIRTUAL TABLE IF NOT EXISTS "{fts}" USING '
        f'fts5(text, content="{table}", content_rowid="{rowid}", tokenize="{TOKENIZE}")'
    )
    # Empty texts (a document's later chunks) stay out, so they do not skew bm25's statistics.
    delete = (
        f"INSERT INTO \"{fts}\" (\"{fts}\", rowid, text) SELECT 'delete', old.{rowid}, old.text WHERE old.text != '';"
    )
    insert = f"INSERT INTO \"{fts}\" (rowid, text) SELECT new.{rowid}, new.text WHERE new.text != '';"
    if triggers is not None:
        keep_in_step(execute, triggers, table, insert, delete, "UPDATE OF text", skip_insert)
    if not exists:
        add_rows(execute, fts, table, rowid)


def add_rows(execute, fts: str, table: str, rowid: str, lo: int = -(2**63)) -> None:
    """Index the texts of ``table``'s rows from ``rowid`` ``lo`` on, in one statement."""
    rows = f"SELECT {rowid}, text FROM \"{table}\" WHERE {rowid} >= ? AND text != ''"
    execute(f'INSERT INTO "{fts}" (rowid, text) {rows}', (lo,))


def search(conn, table: sa.Table, key: str, query: str, where, k: int, extra: list = ()) -> list:
    """Rows (id, text, metadata, the ``extra`` columns, score) of the ``k`` best FTS5 matches of ``query``
    that satisfy ``where`` (None: every row; PostgreSQL goes through ``integrations.keyword.pg_bm25``).

    The best rowids come first, from the FTS5 index alone (and the rows' metadata with a filter), then
    their rows: SQLite sorts whole result rows, so a query that selected each match's text and vector
    read them for every match, and cost 1.5 times the bare query."""
    match = terms.fts5_query(query)
    if match is None:
        return []
    fts = fts_name(key)
    if where is None:
        best = conn.exec_driver_sql(
            f'SELECT rowid, -bm25("{fts}") FROM "{fts}" WHERE "{fts}" MATCH ? ORDER BY bm25("{fts}"), rowid LIMIT ?',
            (match, k),
        ).all()
    else:
        rowid = sa.literal_column(f'"{table.name}".rowid')
        statement, rank = fts5_select(fts, table, rowid, [rowid], query)
        best = conn.execute(statement.where(where).order_by(rank, rowid).limit(k)).all()
    if not best:
        return []
    keys = [key for key, _ in best]
    rowid = sa.literal_column("rowid")
    columns = [rowid.label("key"), table.c.id, table.c.text, table.c.metadata, *extra]
    rows = {r.key: r for r in conn.execute(sa.select(*columns).where(rowid.in_(json_values(keys))))}
    return [SimpleNamespace(**rows[key]._mapping, score=score) for key, score in best if key in rows]


def fts5_select(fts: str, table, rowid, columns: list, query: str):
    """(a SELECT of ``columns`` and ``score`` over ``table``'s rows that the FTS5 table ``fts`` matches with
    ``query``, joined on ``rowid``; its bm25 rank to order by), or None for a query without words."""
    match = terms.fts5_query(query)
    if match is None:
        return None
    index = sa.table(fts, sa.column("rowid"))
    rank = sa.literal_column(f'bm25("{fts}")')
    statement = (
        sa.select(*columns, (-rank).label("score"))
        .select_from(index.join(table, rowid == index.c.rowid))
        .where(sa.literal_column(f'"{fts}"').op("MATCH")(match))
    )
    return statement, rank
