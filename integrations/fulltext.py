"""The keyword index of SQLIndex: FTS5 on SQLite, a generated tsvector column on PostgreSQL.

Both are updated by the database in the writer's own transaction (FTS5 by triggers, the tsvector as a
generated column), so they stay in step with every add, upsert and delete, also those made without
embedkit. Queries reach them only as OR-ed words (``integrations.keywords``), always as bound parameters.
"""

from __future__ import annotations

import sqlalchemy as sa

from . import keywords

TOKENIZE = "porter unicode61 remove_diacritics 2"
TS_CONFIG = "english"


def fts_name(key: str) -> str:
    return f"embedkit_fts_{key}"


def create_sqlite(conn, table: str, key: str) -> None:
    """An external-content FTS5 table over ``table``'s text, kept in step by triggers; built from the
    existing rows when it is new. ``key`` is a checked identifier, so it can sit in the SQL."""
    fts = fts_name(key)
    exists = conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = ?", (fts,)).first()
    conn.exec_driver_sql(
        f'CREATE VIRTUAL TABLE IF NOT EXISTS "{fts}" USING fts5(text, content="{table}", tokenize="{TOKENIZE}")'
    )
    delete = f'INSERT INTO "{fts}" ("{fts}", rowid, text) VALUES (\'delete\', old.rowid, old.text);'
    insert = f'INSERT INTO "{fts}" (rowid, text) VALUES (new.rowid, new.text);'
    triggers = (("ai", "INSERT", insert), ("ad", "DELETE", delete), ("au", "UPDATE OF text", delete + insert))
    for name, event, body in triggers:
        conn.exec_driver_sql(
            f'CREATE TRIGGER IF NOT EXISTS "{key}_embedkit_fts_{name}" AFTER {event} ON "{table}" BEGIN {body} END'
        )
    if not exists:
        conn.exec_driver_sql(f'INSERT INTO "{fts}" ("{fts}") VALUES (\'rebuild\')')


def create_postgres(conn, table: str, index_name: str) -> None:
    """A generated tsvector column with a GIN index (adding it to an existing table rewrites the table once)."""
    conn.execute(
        sa.text(
            f'ALTER TABLE "{table}" ADD COLUMN IF NOT EXISTS tsv tsvector '
            f"GENERATED ALWAYS AS (to_tsvector('{TS_CONFIG}', text)) STORED"
        )
    )
    conn.execute(sa.text(f'CREATE INDEX IF NOT EXISTS "{index_name}" ON "{table}" USING gin (tsv)'))


def search(conn, table: sa.Table, key: str, query: str, where, k: int) -> list:
    """Rows (id, text, metadata, score) of the ``k`` best matches of ``query`` that satisfy ``where``."""
    c = table.c
    if conn.dialect.name == "sqlite":
        match = keywords.fts5_query(query)
        if match is None:
            return []
        fts = sa.table(fts_name(key), sa.column("rowid"))
        rank = sa.literal_column(f'bm25("{fts_name(key)}")')
        statement = (
            sa.select(c.id, c.text, c.metadata, (-rank).label("score"))
            .select_from(fts.join(table, sa.literal_column(f'"{table.name}".rowid') == fts.c.rowid))
            .where(sa.literal_column(f'"{fts_name(key)}"').op("MATCH")(match))
        )
    else:
        words = keywords.tsquery(query)
        if words is None:
            return []
        tsquery = sa.func.to_tsquery(sa.literal_column(f"'{TS_CONFIG}'::regconfig"), words)
        rank = sa.func.ts_rank_cd(sa.literal_column("tsv"), tsquery)
        statement = sa.select(c.id, c.text, c.metadata, rank.label("score")).where(
            sa.literal_column("tsv").op("@@")(tsquery)
        )
        rank = rank.desc()
    return conn.execute(statement.where(where).order_by(rank, c.id).limit(k)).all()
