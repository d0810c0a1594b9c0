"""Keyword search: how a query becomes words for each engine.

Every backend keeps a keyword index beside its rows, updated in the same transaction as the rows:
SQLite FTS5 (``porter unicode61``, ranked by bm25) for SQLIndex on SQLite and for FaissIndex's docstore,
and a generated ``tsvector`` column with a GIN index (ranked by BM25 computed in SQL,
``integrations.keyword.pg_bm25``) on PostgreSQL.

A query never reaches a keyword engine as syntax: it is cut into units, and the units are OR-ed. A unit is
a word (letters and digits), or a phrase: text in double quotes, or a code with a digit in it whose
words are joined by ``-``, ``.``, ``/`` or ``_`` (``Zorblax-7``, ``v1.2.3``, ``IL-6``), which matches only
where its words stand in that order, side by side (``anti-inflammatory`` stays two words). So
``Zorblax-7`` does not match a document that merely holds a "7", and ``*``, ``NEAR``, parentheses and
colons are plain text; a query without words finds nothing. Words are not required (OR), and words
found in most documents weigh next to nothing in BM25's ranking.

Hybrid search fuses the keyword and vector legs in ``integrations._shared.fusion``.
"""

from __future__ import annotations

import re

MAX_TERMS = 64  # words of a query that reach the keyword engine
TOKENIZE = "porter unicode61 remove_diacritics 2"  # the tokenizer of every FTS5 table


WORD = r"[^\W_]+"
CODE = WORD + r"(?:[-./_]" + WORD + r")*"


def terms(query: str) -> list[str]:
    """The distinct words of ``query``, lowercased, in order (at most ``MAX_TERMS``)."""
    return list(dict.fromkeys(w for unit in units(query) for w in unit))


def units(query: str) -> list[tuple[str, ...]]:
    """The distinct match units of ``query``, lowercased, in order: a word is a unit of one, a quoted
    phrase or a joined code a unit of several (at most ``MAX_TERMS`` words in all)."""
    return [words for _, words in _units(query)]


def _units(query: str) -> list[tuple[str, tuple[str, ...]]]:
    """(the unit as written, lowercased; its words) for each unit of ``query``."""
    found, count = {}, 0
    for quoted, plain in re.findall(r'"([^"]*)"|([^"\s]+)', query.lower()):
        pieces = [quoted] if quoted else [piece for code in re.findall(CODE, plain) for piece in _split(code)]
        for piece in pieces:
            words = tuple(re.findall(WORD, piece))
            if words and words not in found and count + len(words) <= MAX_TERMS:
                found[words] = piece
                count += len(words)
    return [(piece, words) for words, piece in found.items()]


def _split(code: str) -> list[str]:
    """A joined code with a digit in it (``Zorblax-7``, ``v1.2``, ``IL-6``) stays one phrase; a joined word
    without one (``anti-inflammatory``) is its words, each a unit."""
    return [code] if re.search(r"\d", code) else re.findall(WORD, code)


def fts5_query(query: str) -> str | None:
    """An FTS5 MATCH expression: the query's units as quoted phrases, OR-ed; None when it has none."""
    found = units(query)
    return " OR ".join('"' + " ".join(u) + '"' for u in found) if found else None


def phrases(query: str) -> list[str]:
    """The query's units as written, for PostgreSQL's ``phraseto_tsquery`` (OR-ed by the caller): its own
    parser then cuts a code such as ``zorblax-7`` as it cut the documents."""
    return [piece for piece, _ in _units(query)]


def quote_lexeme(lexeme: str) -> str:
    """A lexeme as a ``to_tsquery`` operand: quoted, so that it is taken as it is."""
    return "'" + lexeme.replace("'", "''").replace("\\", "\\\\") + "'"
