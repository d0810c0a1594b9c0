"""Framework filters as embedkit filters, exactly where the two languages agree and as bounds where not.

A framework's filter is translated leaf by leaf into a pair of embedkit filters, ``lower`` and ``upper``:
every document ``lower`` matches, the framework's filter matches too, and every document the framework's
filter matches, ``upper`` matches too. Where the languages agree a leaf is exact (``lower == upper``);
where they do not (a substring test, a date written two ways, the document's text) the leaf is bounded
by "nothing" and "everything with that field". ``$not`` swaps the bounds, ``$and`` and ``$or`` combine
them. An exact translation runs in the store alone; a bounded one runs ``upper`` in the store and the
framework's own evaluator on what it returns (``integrations._shared.pushdown``).

``TRUE`` and ``FALSE`` are the filters that match everything and nothing; they fold away, so a translated
filter is a plain embedkit filter, ``TRUE`` or ``FALSE``.
"""

from __future__ import annotations

import json
import operator
from typing import NamedTuple

TRUE = "TRUE"
FALSE = "FALSE"


class Bounds(NamedTuple):
    lower: dict | str
    upper: dict | str

    @property
    def exact(self) -> bool:
        return _key(self.lower) == _key(self.upper)


def exact(filter: dict | str) -> Bounds:
    return Bounds(filter, filter)


def unknown(field: str | None = None) -> Bounds:
    """A leaf the store cannot decide: nothing below, everything (with ``field``, if given) above."""
    return Bounds(FALSE, TRUE if field is None else {field: {"$exists": True}})


def between(lower: dict | str, upper: dict | str) -> Bounds:
    return Bounds(lower, upper)


def all_of(parts: list[Bounds]) -> Bounds:
    return Bounds(_and([p.lower for p in parts]), _and([p.upper for p in parts]))


def any_of(parts: list[Bounds]) -> Bounds:
    return Bounds(_or([p.lower for p in parts]), _or([p.upper for p in parts]))


def negate(part: Bounds) -> Bounds:
    return Bounds(_not(part.upper), _not(part.lower))


def _and(filters: list) -> dict | str:
    if FALSE in filters:
        return FALSE
    kept = _distinct([f for f in filters if f != TRUE])
    return TRUE if not kept else kept[0] if len(kept) == 1 else {"$and": kept}


def _or(filters: list) -> dict | str:
    if TRUE in filters:
        return TRUE
    kept = _distinct([f for f in filters if f != FALSE])
    return FALSE if not kept else kept[0] if len(kept) == 1 else {"$or": kept}


def _not(filter: dict | str) -> dict | str:
    if filter in (TRUE, FALSE):
        return FALSE if filter == TRUE else TRUE
    if set(filter) == {"$not"}:
        return filter["$not"]
    return {"$not": filter}


def _distinct(filters: list) -> list:
    return list({_key(f): f for f in filters}.values())


def _key(filter: dict | str) -> str:
    """Filters compared as JSON text: ``{"a": True} == {"a": 1}`` in Python, not in a filter."""
    return json.dumps(filter, sort_keys=True)


def equal_values(value) -> list:
    """The values Python's ``==`` finds equal to a scalar, as embedkit's type-strict ``$eq`` needs them
    spelt out: ``1 == 1.0 == True`` in Python, while ``$eq`` keeps booleans apart from numbers."""
    if isinstance(value, bool):
        return [value, int(value)]
    if isinstance(value, (int, float)) and value in (0, 1):
        return [value, bool(value)]
    return [value]


def equals(field: str, value) -> dict:
    """``field == value`` with Python's equality, for a scalar that is not None."""
    values = equal_values(value)
    return {field: values[0]} if len(values) == 1 else {field: {"$in": values}}


def compares(field: str, op: str, number) -> dict | str:
    """``field op number`` with Python's ordering, where ``True`` and ``False`` count as 1 and 0 (embedkit's
    ``$gt`` and friends compare numbers with numbers only)."""
    test = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}[op]
    number = int(number) if isinstance(number, bool) else number
    parts = [{field: {op: number}}] + [{field: flag} for flag in (False, True) if test(int(flag), number)]
    return _or(parts)
