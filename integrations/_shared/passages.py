"""Where a hit's words are. ``search`` gives every hit its passage and the places of the query's words in it:

- A keyword hit on a chunked document (the keyword index holds whole documents), and a hybrid hit that the
  vector leg did not find, gets as its span the chunk that the keyword engine ranks best among the
  document's stored chunks; a vector or sparse hit already has its best chunk's span.
- ``hit.highlights``: the character ranges of ``hit.passage`` where the query's words and phrases match,
  found when first asked for (a search that nobody reads the highlights of does not pay for them).

Both run the query through a private in-memory SQLite FTS5 table with the keyword index's own tokenizer
(``porter unicode61``): the engine's tokenizing, stemming and phrase matching, not a copy of them.
PostgreSQL's keyword leg stems with its ``english`` configuration, which differs from Porter's on a few
words, so a PostgreSQL keyword hit may show fewer highlights than it matched.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable

from embedkit.chunking import piece
from integrations._shared.codec import load_span
from integrations.keyword.terms import TOKENIZE, fts5_query

OPEN, CLOSE = "\x02", "\x03"  # the markers FTS5's highlight() puts around a match
_local = threading.local()


def best_chunks(results: list[list], queries: list[str], stored_spans: Callable) -> None:
    """Give each hit that the vector leg did not find, of a document stored as chunks (a keyword hit's span
    is then its first chunk's), the span of its chunk that matches its query best (``stored_spans``: ids ->
    their chunks' spans; the first chunk stays when none matches)."""
    for query, hits in zip(queries, results):
        todo = [hit for hit in hits if hit.span is not None and "vector" not in (hit.ranks or ())]
        stored = stored_spans([hit.id for hit in todo]) if todo else {}
        chunks = []
        for hit in todo:
            spans = sorted(stored.get(hit.id, ()))
            if spans and spans[0][0] == 0 and spans[-1][1] == len(hit.text):  # they tile the text read with it
                chunks += [(hit, span) for span in spans]
        placed: set = set()
        ranked = _matching(fts5_query(query), [piece(hit.text, span) for hit, span in chunks], "ORDER BY rank, rowid")
        for i, *_ in ranked:
            hit, span = chunks[i]
            if id(hit) not in placed:
                hit.span = span
                placed.add(id(hit))


def spans_by_document(rows) -> dict[str, list[tuple[int, int]]]:
    """The chunk spans of stored rows (each with ``id``, ``doc`` and ``span`` JSON), by document id."""
    found: dict[str, list] = {}
    for row in rows:
        if row.span is not None:
            found.setdefault(row.doc or row.id, []).append(load_span(row.span))
    return found


def remember(results: list[list], queries: list[str]) -> None:
    """Let each hit know its query, from which its ``highlights`` are found when they are first asked for."""
    for query, hits in zip(queries, results):
        for hit in hits:
            hit.query = query


def highlights(passage: str, query: str) -> list[tuple[int, int]]:
    """The (start, end) ranges of ``passage`` where ``query``'s words match."""
    found = _matching(fts5_query(query), [passage], "", ", highlight(t, 0, ?, ?)")
    return _ranges(found[0][1]) if found else []


def _matching(match: str | None, texts: list[str], order: str, column: str = "") -> list[tuple]:
    """(index, *column) of the ``texts`` that the FTS5 expression ``match`` matches."""
    if match is None or not texts:
        return []
    conn = _table()
    conn.execute("BEGIN")
    try:  # the rows live only in this transaction, which is rolled back
        # the markers cannot occur in the text: each becomes a space, which keeps every offset
        clean = (text.replace(OPEN, " ").replace(CLOSE, " ") for text in texts)
        conn.executemany("INSERT INTO t (rowid, body) VALUES (?, ?)", enumerate(clean))
        params = (OPEN, CLOSE, match) if column else (match,)
        return conn.execute(f"SELECT rowid{column} FROM t WHERE t MATCH ? {order}", params).fetchall()
    finally:
        conn.rollback()


def _table() -> sqlite3.Connection:
    """This thread's in-memory database with an empty FTS5 table ``t`` (making one costs more than a search)."""
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = sqlite3.connect(":memory:", isolation_level=None)
        conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(body, tokenize='{TOKENIZE}')")
    return conn


def _ranges(marked: str) -> list[tuple[int, int]]:
    """The ranges that ``OPEN`` ... ``CLOSE`` enclose in ``marked``, as offsets into the unmarked text."""
    ranges, at, start = [], 0, 0
    for char in marked:
        if char == OPEN:
            start = at
        elif char == CLOSE:
            ranges.append((start, at))
        else:
            at += 1
    return ranges
