"""Keyword search and its fusion with vector search.

Every backend keeps a keyword index beside its rows, updated in the same transaction as the rows:
SQLite FTS5 (``porter unicode61``, ranked by bm25) for SQLIndex on SQLite and for FaissIndex's docstore,
and a generated ``tsvector`` column with a GIN index (ranked by BM25 computed in SQL,
``fulltext.PostgresBM25``) on PostgreSQL.

A query never reaches a keyword engine as syntax: it is cut into words (letters and digits), and the
words are OR-ed, each quoted where the engine has quoting. So quotes, ``*``, ``-``, ``NEAR``, parentheses
and colons are plain text, and a query without words finds nothing.

Hybrid search runs both legs with the same filter, ``candidates`` deep (at least ``k``), and fuses them
by reciprocal rank fusion: a document's score is the sum over the legs that found it of
``1 / (rrf_k + rank)``, ranks counted from 1. Each hit records its rank in each leg that found it.
"""

from __future__ import annotations

import dataclasses
import re

MODES = ("vector", "keyword", "hybrid")
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


def fuse(legs: dict, k: int, rrf_k: int) -> list:
    """Reciprocal rank fusion of ranked lists of hits: the ``k`` best, each with its ranks per leg."""
    fused: dict = {}
    for leg, hits in legs.items():
        for rank, hit in enumerate(hits, 1):
            best = fused.setdefault(hit.id, dataclasses.replace(hit, score=0.0, ranks={}))
            best.ranks[leg] = rank
            best.score += 1.0 / (rrf_k + rank)
            if leg == "vector":
                best.span, best.vector = hit.span, hit.vector
    order = sorted(fused.values(), key=lambda h: (-h.score, min(h.ranks.values()), h.id))
    return order[:k]
