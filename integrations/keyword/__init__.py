"""Keyword search beside the rows: SQLite FTS5 (``fts5``) and PostgreSQL BM25 over a tsvector
(``pg_bm25``); ``terms`` turns a query into the words both engines see."""
