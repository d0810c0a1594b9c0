"""Haystack 2.x filters (``{"field": "meta.year", "operator": ">", "value": 2020}`` and
``{"operator": "AND", "conditions": [...]}``) as embedkit filter bounds (``integrations.filters.bounds``),
with the semantics of Haystack's own evaluator, ``haystack.utils.filters.document_matches_filter``.

Exact in the store: ``==``, ``!=``, ``in`` and ``not in`` on scalars and None (a missing field equals
None, as in Haystack; ``1 == 1.0 == True`` as in Python), and ``>``, ``>=``, ``<``, ``<=`` on numbers
(None matches nothing). Bounded, and finished by Haystack's evaluator: strings in ``>``-style comparisons
(Haystack compares them as ISO dates), ``==`` on an ISO date (two spellings of one instant are equal),
lists and other values, nested fields (``meta.a.b``) and the document's own fields (``content``, ``id``,
...). The module imports nothing from Haystack; malformed filters raise ``FilterError``.
"""

from __future__ import annotations

from typing import Any

from integrations.errors import FilterError
from integrations.filters.bounds import (
    FALSE,
    Bounds,
    all_of,
    any_of,
    between,
    compares,
    equals,
    exact,
    negate,
    unknown,
)

COMPARISONS = ("==", "!=", ">", ">=", "<", "<=", "in", "not in")
LOGIC = ("AND", "OR", "NOT")
DOCUMENT_FIELDS = ("id", "content", "blob", "meta", "score", "embedding", "sparse_embedding")
RESERVED = "_haystack"  # the stored metadata key that holds what a Document has beside text and meta


def translate(filters: dict[str, Any] | None) -> Bounds | None:
    """The bounds of a Haystack filter; None or ``{}`` (no filter) gives None."""
    if not filters:
        return None
    return _node(filters)


def _node(condition: Any) -> Bounds:
    if not isinstance(condition, dict):
        raise FilterError(f"a Haystack filter condition must be a dict, got {type(condition).__name__}")
    if "field" in condition:
        return _comparison(condition)
    if "operator" not in condition:
        raise FilterError(f"'operator' key missing in {condition}")
    if "conditions" not in condition:
        raise FilterError(f"'conditions' key missing in {condition}")
    operator, conditions = condition["operator"], condition["conditions"]
    if operator not in LOGIC:
        raise FilterError(f"unknown logical operator {operator!r}; expected one of {LOGIC}")
    if not isinstance(conditions, list):
        raise FilterError(f"'conditions' must be a list, got {type(conditions).__name__}")
    parts = [_node(c) for c in conditions]
    if operator == "OR":
        return any_of(parts)
    both = all_of(parts)
    return both if operator == "AND" else negate(both)


def _comparison(condition: dict) -> Bounds:
    for key in ("operator", "value"):
        if key not in condition:
            raise FilterError(f"'{key}' key missing in {condition}")
    field, operator, value = condition["field"], condition["operator"], condition["value"]
    if operator not in COMPARISONS:
        raise FilterError(f"unknown comparison operator {operator!r}; expected one of {COMPARISONS}")
    if operator in ("in", "not in") and not isinstance(value, list):
        raise FilterError(f"operator {operator!r} needs a list value, got {type(value).__name__}")
    if operator in (">", ">=", "<", "<=") and isinstance(value, list):
        raise FilterError(f"operator {operator!r} can't compare with a list")
    if not isinstance(field, str):
        raise FilterError(f"'field' must be a string, got {type(field).__name__}")
    key = _meta_key(field)
    if key is None:  # a Document field, or a nested one: Haystack's evaluator decides
        return unknown(field.split(".")[1] if field.startswith("meta.") and field.count(".") > 1 else None)
    if operator == "in":
        return any_of([_equal(key, v) for v in value]) if value else exact(FALSE)
    if operator == "not in":
        return negate(any_of([_equal(key, v) for v in value])) if value else negate(exact(FALSE))
    if operator == "==":
        return _equal(key, value)
    if operator == "!=":
        return negate(_equal(key, value))
    return _order(key, {">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}[operator], value)


def _meta_key(field: str) -> str | None:
    """The metadata key a field names (``meta.year`` and the legacy bare ``year``), or None."""
    if field.startswith("meta."):
        key = field[len("meta.") :]
        if "." in key:
            return None
    elif "." in field or field in DOCUMENT_FIELDS:
        return None
    else:
        key = field
    if not key or key == RESERVED or any(c in key for c in '"\\') or any(ord(c) < 32 for c in key):
        return None
    return key


def _equal(key: str, value: Any) -> Bounds:
    if value is None:
        return exact({"$or": [{key: None}, {key: {"$exists": False}}]})
    if isinstance(value, (bool, int, float)):
        return exact(equals(key, value))
    if isinstance(value, str):
        if _looks_like_iso_date(value):  # the same instant may be spelt otherwise
            return between({key: value}, {key: {"$exists": True}})
        return exact({key: value})
    return unknown(key)


def _order(key: str, op: str, value: Any) -> Bounds:
    if value is None:
        return exact(FALSE)
    if isinstance(value, (bool, int, float)):
        return exact(compares(key, op, value))
    return unknown(key)  # strings compare as dates in Haystack


def _looks_like_iso_date(value: str) -> bool:
    """Haystack's test for a string its ``==`` may read as a date: a full ``YYYY-MM-DD`` prefix."""
    return (
        len(value) >= 10
        and value[:4].isdigit()
        and value[4] == "-"
        and value[5:7].isdigit()
        and value[7] == "-"
        and value[8:10].isdigit()
        and (len(value) == 10 or value[10] in "Tt ")
    )
