"""LlamaIndex ``MetadataFilters`` as embedkit filter bounds (``integrations.filters.bounds``), with the
semantics of LlamaIndex's own evaluator (``llama_index.core.vector_stores.utils.build_metadata_filter_fn``,
what ``SimpleVectorStore`` runs), applied level by level to nested ``MetadataFilters``.

That evaluator reads a missing key and a null alike; only ``!=``, ``nin`` (true) and ``is_empty`` (true)
match them. Exact in the store: ``==``, ``!=``, ``in``, ``nin`` on scalars (``1 == 1.0 == True`` as in
Python), ``>``-style comparisons on numbers or strings, and ``contains``, ``any`` and ``all`` with
numbers (list elements). Bounded, and finished by LlamaIndex's evaluator: ``contains``/``any``/``all``
with strings (a string field is searched for a substring), ``text_match``, ``text_match_insensitive``,
``is_empty`` and list values. Where the evaluator raises ``TypeError`` on a document (``"a" > 1``), the
document does not match. Operators and values that have no meaning (``in`` with a string, ``text_match``
with a number) raise ``FilterError``. Objects are read by attribute, so nothing is imported from LlamaIndex.
"""

from __future__ import annotations

from typing import Any

from integrations.errors import FilterError
from integrations.filters.bounds import (
    FALSE,
    TRUE,
    Bounds,
    all_of,
    any_of,
    compares,
    equal_values,
    equals,
    exact,
    negate,
    unknown,
)

OPERATORS = (
    "==",
    "!=",
    ">",
    ">=",
    "<",
    "<=",
    "in",
    "nin",
    "any",
    "all",
    "text_match",
    "text_match_insensitive",
    "contains",
    "is_empty",
)
CONDITIONS = ("and", "or", "not")
ORDER = {">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}


def translate(filters: Any) -> Bounds | None:
    """The bounds of a ``MetadataFilters`` (nested ones included); None or no filters gives None."""
    if filters is None or not getattr(filters, "filters", None):
        return None
    return _filters(filters)


def _filters(filters: Any) -> Bounds:
    condition = name_of(getattr(filters, "condition", None) or "and")
    if condition not in CONDITIONS:
        raise FilterError(f"unknown filter condition {condition!r}; expected one of {CONDITIONS}")
    parts = [_filters(f) if hasattr(f, "filters") else _leaf(f) for f in filters.filters]
    if condition == "and":
        return all_of(parts)
    return any_of(parts) if condition == "or" else negate(any_of(parts))


def name_of(value: Any) -> str:
    """An enum member's value (``FilterOperator.EQ`` -> ``"=="``), or the string itself."""
    return str(getattr(value, "value", value))


def _leaf(leaf: Any) -> Bounds:
    key, op, value = leaf.key, name_of(leaf.operator), leaf.value
    if op not in OPERATORS:
        raise FilterError(f"unknown filter operator {op!r}; expected one of {OPERATORS}")
    if not isinstance(key, str) or not key or any(c in key for c in '"\\') or any(ord(c) < 32 for c in key):
        raise FilterError(f"filter keys must be non-empty strings without quotes or control characters: {key!r}")
    present = {key: {"$exists": True}}
    if op == "is_empty":
        return Bounds({"$or": [{key: {"$exists": False}}, {key: None}, {key: ""}]}, TRUE)
    if op in ("in", "nin", "any", "all") and not isinstance(value, list):
        raise FilterError(f"operator {op!r} needs a list value, got {type(value).__name__}")
    if op in ("text_match", "text_match_insensitive") and not isinstance(value, str):
        raise FilterError(f"operator {op!r} needs a string value, got {type(value).__name__}")
    if value is None and op not in ("==", "!="):
        raise FilterError(f"operator {op!r} needs a value, got None")
    if op in ("==", "!="):
        if value is None:  # the evaluator's None: == never matches, != always does
            return exact(FALSE if op == "==" else TRUE)
        found = _equal(key, value)
        return found if op == "==" else negate(found)
    if op in ("in", "nin"):
        found = any_of([_equal(key, v) for v in value]) if value else exact(FALSE)
        return found if op == "in" else negate(found)
    if op in ORDER:
        if isinstance(value, (bool, int, float)):
            return exact(compares(key, ORDER[op], value))
        if isinstance(value, str):
            return exact({key: {ORDER[op]: value}})
        return unknown(key)
    if op == "contains":
        return _contains(key, value)
    if op == "any":
        return any_of([_contains(key, v) for v in value]) if value else exact(FALSE)
    if op == "all":  # all([]) is true wherever the key holds a value
        return all_of([_contains(key, v) for v in value]) if value else exact({"$and": [present, {key: {"$ne": None}}]})
    return unknown(key)  # text_match, text_match_insensitive


def _equal(key: str, value: Any) -> Bounds:
    if value is None:  # metadata[key] == None never holds where the evaluator compares
        return exact(FALSE)
    if isinstance(value, (bool, int, float, str)):
        return exact(equals(key, value))
    return unknown(key)


def _contains(key: str, value: Any) -> Bounds:
    """``value in metadata[key]``: an element of a list, or a substring of a string."""
    if isinstance(value, (bool, int, float)):
        return any_of([exact({key: {"$contains": v}}) for v in equal_values(value)])
    if isinstance(value, str):
        return Bounds({key: {"$contains": value}}, {key: {"$exists": True}})
    return unknown(key)
