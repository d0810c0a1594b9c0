"""The keyword index of SQLIndex: FTS5 on SQLite, a generated tsvector column on PostgreSQL.

Both are updated by the database in the writer's own transaction (FTS5 by triggers, the tsvector as a
generated column), so they stay in step with every add, upsert and delete, also those made without
embedkit. Queries reach them only as OR-ed words (``integrations.keywords``), always as bound parameters.
"""

from __future__ import annotations

import math
import threading
import time

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from . import keywords

TOKENIZE = "porter unicode61 remove_diacritics 2"
TS_CONFIG = "english"


def fts_name(key: str) -> str:
    return f"embedkit_fts_{key}"


def create_sqlite(execute, fts: str, table: str, rowid: str, triggers: str) -> None:
    """An external-content FTS5 table ``fts`` over the ``text`` of ``table``, keyed by ``rowid`` and kept in
    step by the triggers ``<triggers>_ai/_ad/_au``; built from the existing rows when it is new. ``execute``
    runs SQL with qmark parameters (a sqlite3 or SQLAlchemy connection's); the names are checked
    identifiers, so they can sit in the SQL."""
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
    for name, event, body in (
        ("ai", "INSERT", insert),
        ("ad", "DELETE", delete),
        ("au", "UPDATE OF text", delete + insert),
    ):
        execute(f'CREATE TRIGGER IF NOT EXISTS "{triggers}_{name}" AFTER {event} ON "{table}" BEGIN {body} END')
    if not exists:
        execute(f'INSERT INTO "{fts}" (rowid, text) SELECT {rowid}, text FROM "{table}" WHERE text != \'\'')


def create_postgres(conn, table: str, index_name: str) -> None:
    """A generated tsvector column with a GIN index (adding it to an existing table rewrites the table once;
    the ALTER runs only then, as it locks the table against readers)."""
    if "tsv" not in {column["name"] for column in sa.inspect(conn).get_columns(table)}:
        conn.execute(
            sa.text(
                f'ALTER TABLE "{table}" ADD COLUMN tsv tsvector '
                f"GENERATED ALWAYS AS (to_tsvector('{TS_CONFIG}', text)) STORED"
            )
        )
    conn.execute(sa.text(f'CREATE INDEX IF NOT EXISTS "{index_name}" ON "{table}" USING gin (tsv)'))


def search(conn, table: sa.Table, key: str, query: str, where, k: int) -> list:
    """Rows (id, text, metadata, score) of the ``k`` best FTS5 matches of ``query`` that satisfy ``where``
    (SQLite; PostgreSQL goes through ``PostgresBM25``)."""
    c = table.c
    found = fts5_select(
        fts_name(key), table, sa.literal_column(f'"{table.name}".rowid'), [c.id, c.text, c.metadata], query
    )
    if found is None:
        return []
    statement, rank = found
    return conn.execute(statement.where(where).order_by(rank, c.id).limit(k)).all()


def fts5_select(fts: str, table, rowid, columns: list, query: str):
    """(a SELECT of ``columns`` and ``score`` over ``table``'s rows that the FTS5 table ``fts`` matches with
    ``query``, joined on ``rowid``; its bm25 rank to order by), or None for a query without words."""
    match = keywords.fts5_query(query)
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


class PostgresBM25:
    """BM25 over the tsvector column (k1 = 1.2, b = 0.75, as SQLite FTS5), since PostgreSQL's own ranks
    score SciFact far lower (nDCG@10 0.32 for ts_rank_cd, 0.60 for ts_rank normalized by length, 0.69
    for BM25). The ``RERANK`` best matches by ``ts_rank`` are scored exactly; each query word's document
    frequency and the mean document length are counted through the GIN index and kept for ``TTL`` seconds.
    A document's length is its number of distinct lexemes."""

    RERANK = 1000
    TTL = 300.0

    def __init__(self, table: sa.Table):
        self.table = table
        self._df: dict[str, tuple[float, int]] = {}
        self._stats: tuple[float, int, float] | None = None
        self._lock = threading.Lock()

    def search(self, conn, query: str, where, k: int) -> list:
        words = keywords.tsquery(query)
        if words is None:
            return []
        config = sa.literal_column(f"'{TS_CONFIG}'::regconfig")
        lexemes = (
            conn.execute(
                sa.select(
                    sa.func.unnest(sa.func.tsvector_to_array(sa.func.to_tsvector(config, " ".join(words.split(" | ")))))
                )
            )
            .scalars()
            .all()
        )
        if not lexemes:
            return []
        lexemes = sorted(set(lexemes))
        n, mean_length = self._collection(conn)
        idf = [math.log((n - df + 0.5) / (df + 0.5) + 1.0) for df in self._frequencies(conn, lexemes)]
        c, tsv = self.table.c, sa.literal_column(f'"{self.table.name}".tsv')
        tsquery = sa.func.to_tsquery(config, words)
        candidates = (
            sa.select(c.id.label("id"), tsv.label("tsv"))
            .where(tsv.op("@@")(tsquery), where)
            .order_by(sa.func.ts_rank(tsv, tsquery, 1).desc())
            .limit(max(self.RERANK, 10 * k))
            .subquery("candidates")
        )
        found = sa.func.unnest(candidates.c.tsv).table_valued("lexeme", "positions", "weights").lateral("found")
        wanted = (
            sa.func.unnest(
                sa.bindparam("lexemes", lexemes, type_=postgresql.ARRAY(sa.Text)),
                sa.bindparam("idf", idf, type_=postgresql.ARRAY(sa.Float)),
            )
            .table_valued("lexeme", "idf")
            .render_derived(name="wanted")
        )
        tf = sa.func.array_length(found.c.positions, 1)
        norm = 1.2 * (
            0.25 + 0.75 * sa.func.length(candidates.c.tsv) / sa.bindparam("mean", mean_length, type_=sa.Float)
        )
        scores = (
            sa.select(candidates.c.id, sa.func.sum(wanted.c.idf * tf * 2.2 / (tf + norm)).label("score"))
            .select_from(candidates.join(found, sa.true()).join(wanted, wanted.c.lexeme == found.c.lexeme))
            .group_by(candidates.c.id)
            .subquery("scores")
        )
        statement = (
            sa.select(c.id, c.text, c.metadata, scores.c.score)
            .join_from(self.table, scores, scores.c.id == c.id)
            .order_by(scores.c.score.desc(), c.id)
            .limit(k)
        )
        return conn.execute(statement).all()

    def _collection(self, conn) -> tuple[int, float]:
        with self._lock:
            stats = self._stats
        if stats is None or time.monotonic() - stats[0] > self.TTL:
            tsv = sa.literal_column("tsv")
            heads = sa.select(sa.func.count(), sa.func.avg(sa.func.length(tsv))).where(self.table.c.doc.is_(None))
            row = conn.execute(heads).one()
            stats = (time.monotonic(), int(row[0]), float(row[1] or 1.0))
            with self._lock:
                self._stats = stats
        return stats[1], max(stats[2], 1.0)

    def _frequencies(self, conn, lexemes: list[str]) -> list[int]:
        now = time.monotonic()
        with self._lock:
            known = {x: self._df[x][1] for x in lexemes if x in self._df and now - self._df[x][0] <= self.TTL}
        tsv = sa.literal_column("tsv")
        for lexeme in lexemes:
            if lexeme not in known:
                one = sa.cast(keywords.quote_lexeme(lexeme), postgresql.TSQUERY)
                known[lexeme] = conn.execute(
                    sa.select(sa.func.count()).select_from(self.table).where(tsv.op("@@")(one))
                ).scalar_one()
        with self._lock:
            self._df.update({x: (now, known[x]) for x in lexemes})
            while len(self._df) > 100_000:
                self._df.pop(next(iter(self._df)))
        return [known[x] for x in lexemes]
