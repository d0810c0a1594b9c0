"""Compile a parsed filter (integrations.filters) to a SQLAlchemy expression over a JSON column.

Field names and values are always bound parameters. Each leaf is total (true or false, never NULL), so
``$not`` stays the exact complement, as in the Python evaluator.
"""

from __future__ import annotations

import json
import operator

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from .filters import COMPARE, Node, kind

OPS = {"$eq": operator.eq, **COMPARE}
SQLITE_KINDS = {"number": ("integer", "real"), "string": ("text",), "null": ("null",)}


def compile_filter(node: Node, column, dialect: str):
    leaf = _sqlite_leaf if dialect == "sqlite" else _postgres_leaf
    return _compile(node, column, leaf)


def _compile(node: Node, column, leaf):
    op = node[0]
    if op == "and":
        return sa.and_(*(_compile(n, column, leaf) for n in node[1]))
    if op == "or":
        return sa.or_(*(_compile(n, column, leaf) for n in node[1]))
    if op == "not":
        return sa.not_(_compile(node[1], column, leaf))
    _, field, value = node
    if op == "$ne":
        return sa.not_(leaf("$eq", column, field, value))
    if op == "$in":
        return sa.or_(*(leaf("$eq", column, field, v) for v in value))
    if op == "$nin":
        return sa.not_(sa.or_(*(leaf("$eq", column, field, v) for v in value)))
    return leaf(op, column, field, value)


def _total(expr):
    return sa.func.coalesce(expr, sa.false())


def _sqlite_leaf(op: str, column, field: str, value):
    path = '$."' + field + '"'  # bound as a parameter, never spliced into the SQL text
    json_type = sa.func.json_type(column, path)
    if op == "$exists":
        return json_type.is_not(None) if value else json_type.is_(None)
    k = kind(value)
    if k == "bool":
        return _total(json_type == ("true" if value else "false"))
    type_ok = json_type.in_(SQLITE_KINDS[k])
    if k == "null":
        return _total(type_ok)
    compare = OPS[op](sa.func.json_extract(column, path), value)
    return _total(sa.and_(type_ok, compare))


def _postgres_leaf(op: str, column, field: str, value):
    element = column[field]  # column -> :field
    if op == "$exists":
        return column.has_key(field) if value else sa.not_(column.has_key(field))
    as_json = sa.cast(sa.bindparam(None, json.dumps(value), type_=sa.Text), postgresql.JSONB)
    if op == "$eq":
        return _total(element == as_json)
    if kind(value) == "number":
        return sa.case((sa.func.jsonb_typeof(element) == "number", OPS[op](element, as_json)), else_=sa.false())
    text = column[field].astext.collate("C")  # code-point order, whatever the database collation
    return sa.case((sa.func.jsonb_typeof(element) == "string", OPS[op](text, value)), else_=sa.false())
