"""Keyword search: how a query becomes words for each engine.

Every backend keeps a keyword index beside its rows, updated in the same transaction as the rows:
SQLite FTS5 (``porter unicode61``, ranked by bm25) for SQLIndex on SQLite and for FaissIndex's docstore,
and a generated ``tsvector`` column with a GIN index (ranked by BM25 computed in SQL,
``integrations.keyword.pg_bm25``) on PostgreSQL.

A query never reaches a keyword engine as syntax: it is cut into words (letters and digits), and the
words are OR-ed, each quoted where the engine has quoting. So quotes, ``*``, ``-``, ``NEAR``, parentheses
and colons are plain text, and a query without words finds nothing.

Hybrid search fuses the keyword and vector legs in ``integrations._shared.fusion``.
"""

from __future__ import annotations

import re

MAX_TERMS = 64  # words of a query that reach the keyword engine


def terms(query: str) -> list[str]:
    """The distinct words of ``query``, lowercased, in order (at most ``MAX_TERMS``)."""
    return list(dict.fromkeys(re.findall(r"[^\W_]+", query.lower())))[:MAX_TERMS]


def fts5_query(query: str) -> str | None:
    """An FTS5 MATCH expression: the query's words, each quoted, OR-ed; None when it has none."""
    words = terms(query)
    return " OR ".join(f'"{w}"' for w in words) if words else None


def tsquery(query: str) -> str | None:
    """A ``to_tsquery`` expression: the query's words OR-ed; None when it has none."""
    words = terms(query)
    return " | ".join(words) if words else None


def quote_lexeme(lexeme: str) -> str:
    """A lexeme as a ``to_tsquery`` operand: quoted, so that it is taken as it is."""
    return "'" + lexeme.replace("'", "''").replace("\\", "\\\\") + "'"
