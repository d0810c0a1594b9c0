"""Compile a parsed filter (integrations.filters) to a SQLAlchemy expression over a JSON column.

Field names and values are always bound parameters. Each leaf is total (true or false, never NULL), so
``$not`` stays the exact complement, as in the Python evaluator.
"""

from __future__ import annotations

import json
import operator

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from integrations.filters.parse import COMPARE, Node, value_type

OPS = {"$eq": operator.eq, **COMPARE}
SQLITE_TYPES = {"number": ("integer", "real"), "string": ("text",), "null": ("null",)}


def compile_filter(node: Node, column, dialect: str):
    leaf = _sqlite_leaf if dialect == "sqlite" else _postgres_leaf
    return _compile(node, column, leaf)


def _compile(node: Node, column, leaf):
    op = node[0]
    if op == "and":
        return _balanced(sa.and_, [_compile(n, column, leaf) for n in node[1]])
    if op == "or":
        return _balanced(sa.or_, [_compile(n, column, leaf) for n in _merge_equalities(node[1])])
    if op == "not":
        return sa.not_(_compile(node[1], column, leaf))
    _, field, value = node
    if op == "$ne":
        return sa.not_(leaf("$eq", column, field, value))
    if op in ("$in", "$nin"):
        groups: dict[str, list] = {}
        for v in value:
            groups.setdefault(value_type(v), []).append(v)
        any_of = _balanced(sa.or_, [leaf("$in", column, field, vs) for vs in groups.values()])
        return any_of if op == "$in" else sa.not_(any_of)
    return leaf(op, column, field, value)


def _merge_equalities(nodes: list[Node]) -> list[Node]:
    """The branches of an ``$or``, with two or more ``$eq``/``$in`` leaves on one field as one ``$in``: the
    same rows (``$in`` keeps ``$eq``'s type rules), but SQL tests one set instead of n comparisons."""
    values: dict[str, list] = {}
    for n in nodes:
        if n[0] in ("$eq", "$in"):
            values.setdefault(n[1], []).append(n)
    merged = {
        field: [v for n in leaves for v in (n[2] if n[0] == "$in" else [n[2]])] for field, leaves in values.items()
    }
    out, done = [], set()
    for n in nodes:
        field = n[1] if n[0] in ("$eq", "$in") else None
        if field is None or len(values[field]) == 1:
            out.append(n)
        elif field not in done:
            done.add(field)
            out.append(("$in", field, merged[field]))
    return out


def _balanced(combine, exprs: list):
    """``combine`` over ``exprs`` as a balanced tree: SQLite refuses expression trees over 1,000 deep, and
    SQLAlchemy flattens nested ANDs and ORs, so each half is wrapped (in a no-op, as leaves are total)."""
    if len(exprs) <= 8:
        return combine(*exprs)
    middle = len(exprs) // 2
    return combine(_total(_balanced(combine, exprs[:middle])), _total(_balanced(combine, exprs[middle:])))


def _total(expr):
    return sa.func.coalesce(expr, sa.false())


def _sqlite_leaf(op: str, column, field: str, value):
    path = '$."' + field + '"'  # bound as a parameter, never spliced into the SQL text
    json_type = sa.func.json_type(column, path)
    if op == "$exists":
        return json_type.is_not(None) if value else json_type.is_(None)
    if op == "$contains":  # an element of the list equal to value, with $eq's type rules
        elements = sa.func.json_each(column, path).table_valued("type", "value")
        k = value_type(value)
        if k == "bool":
            match = elements.c.type == ("true" if value else "false")
        elif k == "null":
            match = elements.c.type == "null"
        else:
            match = sa.and_(elements.c.type.in_(SQLITE_TYPES[k]), elements.c.value == value)
        is_list = sa.func.json_type(column, path) == "array"
        return _total(sa.and_(is_list, sa.exists(sa.select(1).select_from(elements).where(match))))
    if op == "$in":  # values of one JSON type, bound as one JSON array however many there are
        k = value_type(value[0])
        if k in ("bool", "null"):
            return sa.or_(*(_sqlite_leaf("$eq", column, field, v) for v in set(value)))
        values = sa.select(sa.column("value")).select_from(sa.func.json_each(json.dumps(value)).table_valued("value"))
        compare = sa.func.json_extract(column, path).in_(values.scalar_subquery())
        return _total(sa.and_(json_type.in_(SQLITE_TYPES[k]), compare))
    k = value_type(value)
    if k == "bool":
        return _total(json_type == ("true" if value else "false"))
    type_ok = json_type.in_(SQLITE_TYPES[k])
    if k == "null":
        return _total(type_ok)
    compare = OPS[op](sa.func.json_extract(column, path), value)
    return _total(sa.and_(type_ok, compare))


def _postgres_leaf(op: str, column, field: str, value):
    element = column[field]  # column -> :field
    if op == "$exists":
        return column.has_key(field) if value else sa.not_(column.has_key(field))
    as_json = sa.cast(sa.bindparam(None, json.dumps(value), type_=sa.Text), postgresql.JSONB)
    if op == "$in":  # one JSON array parameter however many values there are
        return _total(element.in_(sa.select(sa.func.jsonb_array_elements(as_json)).scalar_subquery()))
    if op in ("$eq", "$contains"):  # containment, which the GIN index on metadata serves
        # {"f": [v]} is contained only where f is a list with an element equal to v (jsonb's exception,
        # a list containing a bare scalar, applies at the top level only)
        probe = {field: value} if op == "$eq" else {field: [value]}
        return column.op("@>", is_comparison=True)(
            sa.cast(sa.bindparam(None, json.dumps(probe), type_=sa.Text), postgresql.JSONB)
        )
    if value_type(value) == "number":
        return sa.case((sa.func.jsonb_typeof(element) == "number", OPS[op](element, as_json)), else_=sa.false())
    text = column[field].astext.collate("C")  # code-point order, whatever the database collation
    return sa.case((sa.func.jsonb_typeof(element) == "string", OPS[op](text, value)), else_=sa.false())
