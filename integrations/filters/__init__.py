"""The metadata filter language: ``parse`` validates a filter into a tree (its docstring states the exact
semantics), ``to_sql`` compiles the tree to bound SQL for SQLite and PostgreSQL."""

from integrations.errors import FilterError
from integrations.filters.parse import Node, filter_key, parse_filter

__all__ = ["FilterError", "Node", "filter_key", "parse_filter"]
