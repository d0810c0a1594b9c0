"""SQLite specifics of SQLIndex: the change log that lets the matrix follow the table (and the list of
segments it keeps entries for), the filter postings that answer a new filter by seeks, embedkit's own
writes, which index their new rows in one go instead of by trigger, and the upgrade of tables written
before metadata kept non-ASCII keys as they are.

Triggers append the rowid of every updated or deleted row to ``embedkit_log`` in the writer's own
transaction, whoever the writer is. Inserted rows mostly need no log: they get rowids above the highest
one a cache has seen. But SQLite hands out the rowid of a deleted newest row again, under the high-water
mark of every cache that saw it; so the highest rowid ever deleted is kept in ``embedkit_log_top``, and an
insert at or below it is logged too.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import sqlalchemy as sa

from integrations._shared.codec import dumps, int_keys
from integrations._shared.sqlite_files import json_ints
from integrations.filters import postings
from integrations.filters.postings import Postings
from integrations.keyword import fts5

LOG_TABLE = "embedkit_log"
BULK_TABLE = "embedkit_bulk"  # the postings and FTS5 tables whose insert triggers wait for ``inserting``
SEGMENTS_TABLE = "embedkit_segments"  # per table: its segments (integrations.sql.segments) and their oldest seq
ROWID = sa.literal_column("rowid")
KEEP = 10_000  # log entries kept per table; a cache further behind than that reloads the table


def postings_name(key: str) -> str:
    """The filter postings of table ``key`` (``integrations.filters.postings``)."""
    return f"embedkit_postings_{key}"


def skipping(name: str) -> str:
    """The SQL condition under which the insert trigger of the postings or FTS5 table ``name`` waits for
    ``inserting`` (a checked identifier, so it can sit in the SQL)."""
    return f"EXISTS (SELECT 1 FROM {BULK_TABLE} WHERE name = '{name}')"


UPSERT = (
    'INSERT INTO "{table}" (id, text, metadata, embedding, doc, span) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) '
    "DO UPDATE SET text = excluded.text, metadata = excluded.metadata, embedding = excluded.embedding, "
    "doc = excluded.doc, span = excluded.span"
)


def upsert(conn, table: str, key: str, rows: list[tuple]) -> None:
    """Insert or replace ``rows`` of (id, text, metadata JSON, vector, doc, span JSON) in ``table``, as plain
    tuples through the driver (a compiled SQLAlchemy insert costs more than SQLite's own work on the row),
    their metadata and text indexed at the end (``inserting``)."""
    with inserting(conn, table, key):
        values = [(i, t, m, np.asarray(v, "<f4").tobytes(), d, s) for i, t, m, v, d, s in rows]
        conn.exec_driver_sql(UPSERT.format(table=table), values)


@contextlib.contextmanager
def inserting(conn, table: str, key: str):
    """Inside a write transaction, around inserts into ``table``: the rows it inserts get their filter
    postings and keyword index entries in three statements at the end, instead of through the insert
    triggers, which cost three to five times as much; the mark that tells the triggers so is the write's
    own, so no other writer skips them. Rows it updates or deletes go through their triggers as always."""
    execute, names = conn.exec_driver_sql, (postings_name(key), fts5.fts_name(key))
    above = execute(f'SELECT coalesce(max(rowid), 0) FROM "{table}"').scalar()
    execute(f"INSERT INTO {BULK_TABLE} VALUES (?), (?)", names)
    yield
    execute(f"DELETE FROM {BULK_TABLE} WHERE name IN (?, ?)", names)
    postings.add_rows(execute, table, names[0], above + 1)
    fts5.add_rows(execute, names[1], table, "rowid", above + 1)


def create_log(conn, table: str, key: str) -> None:
    conn.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {LOG_TABLE} "
        "(seq INTEGER PRIMARY KEY AUTOINCREMENT, table_name TEXT NOT NULL, rid INTEGER NOT NULL)"
    )
    conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {LOG_TABLE}_by_table ON {LOG_TABLE} (table_name, seq)")
    conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {BULK_TABLE} (name TEXT PRIMARY KEY)")
    conn.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {SEGMENTS_TABLE} "
        "(table_name TEXT PRIMARY KEY, segments TEXT NOT NULL, keep INTEGER NOT NULL)"
    )
    for name, column in (("floor", "seq"), ("top", "top")):
        conn.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {LOG_TABLE}_{name} (table_name TEXT PRIMARY KEY, {column} INTEGER NOT NULL)"
        )
    for event in ("UPDATE", "DELETE"):  # the key is a checked identifier, so it can sit in the SQL
        conn.exec_driver_sql(
            f'CREATE TRIGGER IF NOT EXISTS "{key}_embedkit_{event.lower()}" AFTER {event} ON "{table}" '
            f"BEGIN INSERT INTO {LOG_TABLE} (table_name, rid) VALUES ('{key}', old.rowid); END"
        )
    top = f"(SELECT top FROM {LOG_TABLE}_top WHERE table_name = '{key}')"
    conn.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {LOG_TABLE}_top (table_name TEXT PRIMARY KEY, top INTEGER NOT NULL)"
    )
    conn.exec_driver_sql(
        f'CREATE TRIGGER IF NOT EXISTS "{key}_embedkit_top" AFTER DELETE ON "{table}" '
        f"BEGIN INSERT OR REPLACE INTO {LOG_TABLE}_top VALUES ('{key}', max(old.rowid, coalesce({top}, 0))); END"
    )
    conn.exec_driver_sql(
        f'CREATE TRIGGER IF NOT EXISTS "{key}_embedkit_reuse" AFTER INSERT ON "{table}" WHEN new.rowid <= {top} '
        f"BEGIN INSERT INTO {LOG_TABLE} (table_name, rid) VALUES ('{key}', new.rowid); END"
    )


def prune(conn, key: str) -> None:
    """Keep the log short (inside a write): drop entries more than ``KEEP`` behind the newest, but none that
    a segment of the table still needs."""
    ends = [
        conn.exec_driver_sql(f"SELECT {end}(seq) FROM {LOG_TABLE} WHERE table_name = ?", (key,)).scalar()
        for end in ("min", "max")
    ]
    if ends[0] is None or ends[1] - ends[0] < 2 * KEEP:
        return
    cut = conn.exec_driver_sql(
        f"SELECT seq FROM {LOG_TABLE} WHERE table_name = ? ORDER BY seq DESC LIMIT 1 OFFSET ?", (key, KEEP)
    ).scalar()
    keep = conn.exec_driver_sql(f"SELECT keep FROM {SEGMENTS_TABLE} WHERE table_name = ?", (key,)).scalar()
    if cut is not None and keep is not None:  # segments mask their stale rows with the entries after their seq
        cut = min(cut, keep)
    if cut is not None:
        conn.exec_driver_sql(f"DELETE FROM {LOG_TABLE} WHERE table_name = ? AND seq <= ?", (key, cut))
        conn.exec_driver_sql(f"INSERT OR REPLACE INTO {LOG_TABLE}_floor VALUES (?, ?)", (key, cut))


def touched(conn, key: str, seq: int) -> np.ndarray | None:
    """Rowids updated or deleted after log position ``seq``; None when the log was pruned past it."""
    found = log_after(conn, key, seq)
    return None if found is None else found[1]


def log_after(conn, key: str, seq: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(positions, rowids) of the log entries after position ``seq``; None when the log was pruned past it."""
    floor = conn.exec_driver_sql(f"SELECT seq FROM {LOG_TABLE}_floor WHERE table_name = ?", (key,)).scalar()
    if floor is not None and seq < floor:
        return None
    sql = f"SELECT seq, rid FROM {LOG_TABLE} WHERE table_name = ? AND seq > ?"
    found = np.array(conn.exec_driver_sql(sql, (key, seq)).all(), dtype=np.int64).reshape(-1, 2)
    return found[:, 0], found[:, 1]


def follow(conn, table: sa.Table, key: str, cache) -> None:
    """Bring ``cache`` (a VectorCache keyed by rowid) up to ``table``, reading only what changed. The
    highest rowid and log position tell whether anything changed, whoever wrote it."""
    c = table.c
    top_rowid = conn.exec_driver_sql(f'SELECT coalesce(max(rowid), 0) FROM "{table.name}"').scalar_one()
    top_seq = conn.exec_driver_sql(
        f"SELECT coalesce(max(seq), 0) FROM {LOG_TABLE} WHERE table_name = ?", (key,)
    ).scalar_one()
    if cache.state is not None and top_rowid <= cache.state[0] and top_seq == cache.state[1]:
        return  # nothing was inserted, updated or deleted, by this library or anyone else
    changed = None if cache.state is None else touched(conn, key, cache.state[1])
    if changed is None:  # a new cache, or one the pruned log no longer reaches
        cache.reset(conn.execute(sa.select(ROWID, c.id, c.embedding)).all(), (top_rowid, top_seq))
        return
    after = cache.state[0]
    # Two queries: SQLite scans the whole table for "rowid > ? OR rowid IN (...)".
    rows = conn.execute(sa.select(ROWID, c.id, c.embedding).where(ROWID > after)).all()
    if len(changed):
        rows += conn.execute(
            sa.select(ROWID, c.id, c.embedding).where(ROWID.in_(json_ints(changed)), ROWID <= after)
        ).all()
    cache.apply(changed, rows, (max(after, top_rowid), top_seq))


def matching(conn, table: sa.Table, key: str, node, where, after: int | None, changed: np.ndarray) -> np.ndarray:
    """Rowids matching the filter ``node`` (compiled: ``where``): all of them, found through the postings,
    or those above ``after`` or in ``changed``, found by evaluating ``where`` over those rows."""
    if after is None:
        every = functools.partial(_rowids, conn, table)
        return Postings(conn.connection.driver_connection, postings_name(key), every).match(node)
    where = sa.and_(sa.or_(ROWID > after, ROWID.in_(json_ints(changed))), where)
    return _rowids(conn, table, where)


def _rowids(conn, table: sa.Table, where=sa.true()) -> np.ndarray:
    return int_keys(conn.execute(sa.select(ROWID).select_from(table).where(where)))


def migrate_metadata(conn, table: sa.Table, load) -> None:
    """Rewrite metadata stored with escaped non-ASCII keys (embedkit 0.1), which SQLite's JSON paths miss."""
    c = table.c
    for row in conn.execute(sa.select(c.id, c.metadata).where(c.metadata.contains("\\u"))).all():
        conn.execute(sa.update(table).where(c.id == row.id).values(metadata=dumps(load(row))))
