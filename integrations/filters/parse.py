"""The metadata filter language shared by every backend.

``{"source": "a.pdf", "page": {"$gte": 1}}`` matches documents whose ``source`` equals ``"a.pdf"`` and
whose ``page`` is a number >= 1. Field operators: ``$eq $ne $gt $gte $lt $lte $in $nin $exists $contains``;
logical operators: ``$and`` / ``$or`` (lists of filters) and ``$not`` (one filter). Several keys in one
object are ANDed.

Semantics, identical on every backend:
- values are str, int, float, bool or None; ``$eq`` is type-strict (``1`` matches ``1.0`` but not ``True``
  or ``"1"``), ``None`` matches a JSON null;
- ``$gt``-style comparisons take a number or a string and only match fields of the same JSON type (strings
  compare by code point);
- ``$ne`` and ``$nin`` also match documents that lack the field; ``$exists`` tests presence;
- ``{"tags": {"$contains": "x"}}`` matches documents whose ``tags`` is a list with an element equal to
  ``"x"`` (type-strict, as ``$eq``; only the list's own elements count, not those of nested lists). A
  field that is not a list never matches, so ``{"tags": "x"}`` and ``$contains`` never overlap.

``parse_filter`` validates a filter and returns a tree of tuples that ``integrations.filters.to_sql``
compiles to bound SQL for every backend (FAISS filters run as SQL over its docstore).
"""

from __future__ import annotations

import json
import math
import operator
from typing import Any

from integrations._shared.validation import surrogate_at
from integrations.errors import FilterError

FIELD_OPS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$contains")
LOGIC_OPS = ("$and", "$or", "$not")

INT64 = (-(2**63), 2**63 - 1)
MAX_DEPTH = 32


# A parsed filter is one of:
#   ("and", [node, ...]) | ("or", [node, ...]) | ("not", node) | (op, field, value) with op in FIELD_OPS
Node = tuple


def parse_filter(filter: dict | None) -> Node | None:
    """Validate ``filter``; a malformed one raises FilterError naming the offending part."""
    if filter is None:
        return None
    return _parse(filter, "filter")


def _parse(obj: Any, where: str, depth: int = 0) -> Node:
    if depth > MAX_DEPTH:
        raise FilterError(f"filter: $and, $or and $not nest at most {MAX_DEPTH} levels deep")
    if not isinstance(obj, dict):
        raise FilterError(f"{where}: expected a dict, got {type(obj).__name__}")
    if not obj:
        raise FilterError(f"{where}: empty filter")
    nodes = []
    for key, value in obj.items():
        here = f"{where}[{key!r}]"
        if not isinstance(key, str):
            raise FilterError(f"{here}: keys must be strings")
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"{here}: expected a non-empty list of filters")
            nodes.append((key[1:], [_parse(v, f"{here}[{i}]", depth + 1) for i, v in enumerate(value)]))
        elif key == "$not":
            nodes.append(("not", _parse(value, here, depth + 1)))
        elif key.startswith("$"):
            raise FilterError(f"{here}: unknown operator {key!r}; expected one of {LOGIC_OPS} or a field name")
        else:
            _check_field(key, here)
            nodes.extend(_parse_field(key, value, here))
    return nodes[0] if len(nodes) == 1 else ("and", nodes)


def _parse_field(field: str, value: Any, where: str) -> list[Node]:
    if not isinstance(value, dict):
        return [("$eq", field, _scalar(value, where))]
    if not value:
        raise FilterError(f"{where}: empty operator object")
    nodes = []
    for op, operand in value.items():
        here = f"{where}[{op!r}]"
        if op not in FIELD_OPS:
            raise FilterError(f"{here}: unknown operator {op!r}; expected one of {FIELD_OPS}")
        if op in ("$in", "$nin"):
            if not isinstance(operand, list) or not operand:
                raise FilterError(f"{here}: expected a non-empty list of values")
            operand = [_scalar(v, f"{here}[{i}]") for i, v in enumerate(operand)]
        elif op == "$exists":
            if not isinstance(operand, bool):
                raise FilterError(f"{here}: expected true or false, got {operand!r}")
        elif op in ("$eq", "$ne", "$contains"):
            operand = _scalar(operand, here)
        else:
            operand = _scalar(operand, here)
            if operand is None or isinstance(operand, bool):
                raise FilterError(f"{here}: comparisons need a number or a string, got {operand!r}")
        nodes.append((op, field, operand))
    return nodes


def _check_field(field: str, where: str) -> None:
    if not field or any(c in field for c in '"\\') or any(ord(c) < 32 for c in field):
        raise FilterError(f"{where}: field names must be non-empty, without quotes, backslashes or control characters")


def _scalar(value: Any, where: str) -> Any:
    if isinstance(value, str):
        if (at := surrogate_at(value)) is not None:
            raise FilterError(f"{where}: a lone surrogate at position {at} (not valid UTF-8)")
        return value
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise FilterError(f"{where}: numbers must be finite, got {value!r}")
        if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
            raise FilterError(f"{where}: integers must fit in 64 bits, got {value}")
        return value
    raise FilterError(f"{where}: expected a string, number, boolean or null, got {type(value).__name__}")


def filter_key(node: Node) -> str:
    """A canonical text for a parsed filter: equal keys mean equal filters (True and 1 stay apart)."""
    return json.dumps(node, separators=(",", ":"))


# ----------------------------------------------------------------- what the SQL compiler shares

COMPARE = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


def value_type(value: Any) -> str:
    """The JSON type of a value: 'bool', 'number', 'string', 'null' or 'other'."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null" if value is None else "other"
