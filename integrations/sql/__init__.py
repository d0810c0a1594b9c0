"""SQLIndex: documents in one SQL table, through SQLAlchemy 2.

- SQLite (the embedded default): WAL, a busy timeout and ``BEGIN IMMEDIATE`` writes. Search is exact,
  over an in-memory matrix that follows the table: triggers log updated and deleted rowids in
  ``embedkit_log``, so a refresh reads only the rows written since (``integrations.sql.vector_cache``).
- PostgreSQL with pgvector: a ``vector(d)`` column with an HNSW index (cosine ops); search and filters
  run in SQL, with filters on JSONB (``integrations.sql.postgres``). Without the extension it falls back to
  an in-memory matrix that is reloaded whenever the table changed.
- Filters compile to bound SQL (``integrations.filters.to_sql``); on the in-memory paths their matching
  rows are cached per filter and kept in step with writes (``integrations._shared.filter_cache``).
"""

from integrations.sql.index import SQLIndex

__all__ = ["SQLIndex"]
