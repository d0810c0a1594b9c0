"""Filter postings: a persistent index of metadata values in SQLite, so that the first use of a filter costs
time in proportion to the rows it matches, not to the table.

Each row's metadata gives one posting per top-level field (its JSON type and scalar value) and one per
element of a list field (for ``$contains``), in a ``WITHOUT ROWID`` table keyed by
``(field, element, type, value, row)``: an equality, ``$in`` or range on one field is one or a few
seeks and a scan of the matching entries. Types and values are those SQLite's ``json_type`` and
``json_extract`` give for the stored JSON, so every leaf selects exactly the rows the JSON evaluator of
``integrations.filters.to_sql`` selects; ``$and``/``$or``/``$not`` combine the leaves' sorted row keys as
sets (``$not``, ``$ne``, ``$nin`` and ``$exists: false`` take the complement within every row). The owner
writes a row's postings in the transaction that writes the row, and removes them in the one that
deletes it: the FaissIndex docstore directly (``entries``), SQLIndex's SQLite tables through triggers
(``create_with_triggers``), so that every writer keeps them, with embedkit or without.
"""

from __future__ import annotations

import functools
import json

import numpy as np

from integrations._shared.codec import int_keys
from integrations._shared.sqlite_files import keep_in_step
from integrations.filters.parse import Node, value_type
from integrations.filters.to_sql import SQLITE_TYPES

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {table} (field TEXT NOT NULL, element INTEGER NOT NULL, type TEXT NOT NULL, "
    "value NOT NULL, key INTEGER NOT NULL, PRIMARY KEY (field, element, type, value, key)) WITHOUT ROWID"
)
COMPARE_SQL = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
INT64 = (-(2**63), 2**63 - 1)


def entries(keys, metadata_texts: list[str]):
    """The postings of rows ``keys`` whose stored metadata are the JSON objects ``metadata_texts``."""
    for key, metadata in zip(keys, json.loads("[" + ",".join(metadata_texts) + "]")):
        for field, value in metadata.items():
            yield (field, 0, *_typed(value), key)
            if isinstance(value, list):
                for element in value:
                    yield (field, 1, *_typed(element), key)


def create_with_triggers(execute, table: str, postings: str, skip_insert: str) -> None:
    """The postings table ``postings`` over the ``metadata`` of ``table``'s rows (keyed by rowid), kept in
    step by triggers (the insert trigger not while the SQL condition ``skip_insert`` holds: the writer then
    calls ``add_rows``) and built from the existing rows when it is new. ``execute`` runs SQL (a sqlite3 or
    SQLAlchemy connection's); the names are checked identifiers, so they can sit in the SQL."""
    exists = execute("SELECT 1 FROM sqlite_master WHERE name = ?", (postings,)).fetchone()
    execute(SCHEMA.format(table=postings))
    # DISTINCT drops a list's repeated elements (a trigger's OR IGNORE gives way to an upsert's conflict
    # policy); a DELETE per SELECT, as a compound SELECT would make the DELETE scan the table
    insert = "".join(f"INSERT INTO {postings} {select};" for select in _selects("new"))
    delete = "".join(
        f"DELETE FROM {postings} WHERE (field, element, type, value, key) IN ({select});" for select in _selects("old")
    )
    keep_in_step(execute, postings, table, insert, delete, "UPDATE", skip_insert)
    if not exists:
        add_rows(execute, table, postings)


def add_rows(execute, table: str, postings: str, lo: int = 0, hi: int = INT64[1]) -> None:
    """Post the rows of ``table`` with rowids ``lo..hi`` in two statements, which cost half what building
    the entries in Python does (rows already posted stay as they are); sorted first, so that the entries go
    into the table's B-tree in its order (a batch of 5,000 rows then costs about half)."""
    for select in _selects("t", source=f'"{table}" t, ', ranged=True):
        execute(f"INSERT OR IGNORE INTO {postings} {select} ORDER BY 1, 2, 3, 4, 5", (lo, hi))


def _selects(row: str, source: str = "", ranged: bool = False) -> tuple[str, str]:
    """SELECTs of (the top-level postings, the list elements' postings) of ``row`` (``ranged``: of the
    rows of ``source`` with rowids between two parameters): the SQL twin of ``entries``, as ``json_each``
    gives each value's ``json_type`` and ``json_extract`` value."""
    value = "CASE WHEN {0}.type IN ('integer', 'real', 'text') THEN {0}.atom ELSE 0 END"
    each = f"FROM {source}json_each({row}.metadata) f"
    within = f"{row}.rowid BETWEEN ? AND ?" if ranged else ""
    return (
        f"SELECT f.key, 0, f.type, {value.format('f')}, {row}.rowid {each}" + (within and f" WHERE {within}"),
        f"SELECT DISTINCT f.key, 1, e.type, {value.format('e')}, {row}.rowid {each}, json_each(f.value) e "
        "WHERE f.type = 'array'" + (within and f" AND {within}"),
    )


def _typed(value) -> tuple[str, object]:
    """(json_type, stored value) as SQLite's JSON functions see ``value`` once it is stored as JSON."""
    if value is True or value is False:
        return ("true" if value else "false"), 0
    if value is None:
        return "null", 0
    if isinstance(value, int):  # an integer beyond 64 bits is json_type 'integer', json_extract's real
        return "integer", value if INT64[0] <= value <= INT64[1] else float(value)
    if isinstance(value, float):
        return "real", value
    if isinstance(value, str):
        return "text", value
    return ("array" if isinstance(value, list) else "object"), 0


class Postings:
    """The postings table ``table`` on the sqlite3 connection ``conn``; ``every`` returns every row key."""

    def __init__(self, conn, table: str, every):
        self.conn, self.table, self.every = conn, table, every

    def create(self) -> None:
        self.conn.execute(SCHEMA.format(table=self.table))

    def remove(self, keys, metadata_texts: list[str]) -> None:
        sql = f"DELETE FROM {self.table} WHERE field = ? AND element = ? AND type = ? AND value = ? AND key = ?"
        self.conn.executemany(sql, entries(keys, metadata_texts))

    def match(self, node: Node) -> np.ndarray:
        """The sorted keys of the rows that match ``node``."""
        op = node[0]
        if op == "and":
            return functools.reduce(lambda a, b: np.intersect1d(a, b, assume_unique=True), map(self.match, node[1]))
        if op == "or":
            return np.unique(np.concatenate([self.match(n) for n in node[1]]))
        if op == "not":
            return self._complement(self.match(node[1]))
        _, field, value = node
        if op in ("$ne", "$nin"):
            return self._complement(self.match(("$eq" if op == "$ne" else "$in", field, value)))
        if op == "$exists":
            found = self._select(field, 0, "1", [])
            return found if value else self._complement(found)
        if op == "$in":
            return np.unique(np.concatenate([self._equal(field, 0, v) for v in value]))
        if op in COMPARE_SQL:
            types = SQLITE_TYPES[value_type(value)]
            return self._select(field, 0, f"{_types(types)} AND value {COMPARE_SQL[op]} ?", [*types, value])
        return self._equal(field, 1 if op == "$contains" else 0, value)

    def _equal(self, field: str, element: int, value) -> np.ndarray:
        """Rows whose ``field`` (or one of its list's elements) equals ``value`` with ``$eq``'s type rules."""
        kind = value_type(value)
        if kind in ("bool", "null"):
            return self._select(field, element, "type = ?", [_typed(value)[0]])
        types = SQLITE_TYPES[kind]
        return self._select(field, element, f"{_types(types)} AND value = ?", [*types, value])

    def _select(self, field: str, element: int, where: str, args: list) -> np.ndarray:
        sql = f"SELECT key FROM {self.table} WHERE field = ? AND element = ? AND {where}"
        return np.unique(int_keys(self.conn.execute(sql, [field, element, *args])))

    def _complement(self, keys: np.ndarray) -> np.ndarray:
        return np.setdiff1d(self.every(), keys, assume_unique=True)


def _types(types: tuple[str, ...]) -> str:
    return "type = ?" if len(types) == 1 else f"type IN ({', '.join('?' * len(types))})"
