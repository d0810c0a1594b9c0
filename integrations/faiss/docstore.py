"""The SQLite file that holds a FaissIndex's truth: documents, their kept vector codes, and a log of deletes.

Tables:
- ``docs(fid, id, metadata, doc, span)``: one row per live chunk (a document stored whole is one chunk).
  ``fid`` is the FAISS id, given out by AUTOINCREMENT, so it never repeats and grows in commit order. An
  upsert deletes the old rows and inserts new ones under new fids. A document's later chunks name it in
  ``doc`` and carry its metadata; ``span`` is a chunk's characters (see ``integrations._shared.chunk_rows``). The
  rows are narrow, so a filter that must parse every row's metadata reads a few pages per thousand
  documents, and a page of hits reads a few pages.
- ``bodies(fid, text, code)``: the text and the kept vector code (float32, or int8) of each live row.
- ``dead(seq, fid)``: one row per deleted fid, in commit order. A process brings its FAISS structure up to
  date with the rows whose fid is above the last one it applied and the deletes whose seq is above the
  last one it applied.
- ``info(key, value)``: the index's settings (``config``), int8 ranges (``ranges``), and the manifest of
  the FAISS segments (``segments``, see ``integrations.faiss.segments``).
- ``fts``: an FTS5 index over ``bodies.text`` (``porter unicode61``), kept in step in the writer's
  transaction, for keyword and hybrid search.
- ``postings``: the metadata values of every row (``integrations.filters.postings``), written and removed
  with the rows, so that a new filter is answered by seeks instead of parsing every row's metadata.
- ``sparse_rows``, ``sparse_postings``: with a sparse encoder, the rows' sparse vectors (``integrations.sparse``).

The file runs in WAL mode: readers never block the one writer, and writers queue on ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from integrations._shared import sqlite_files
from integrations._shared.codec import int_keys, load_span
from integrations._shared.sqlite_files import json_ints, json_values
from integrations.errors import CorruptIndexError, NotAnIndexError, ReadOnlyIndexError
from integrations.faiss import segment_files
from integrations.faiss.rows import Found, Row, parse_metadatas
from integrations.filters.postings import Postings, add_rows
from integrations.filters.to_sql import compile_filter
from integrations.keyword import terms
from integrations.keyword.fts5 import create_sqlite, fts5_select
from integrations.sparse import SparseTables

SCHEMA = """
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (
    fid INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, metadata TEXT NOT NULL, doc TEXT, span TEXT);
CREATE TABLE IF NOT EXISTS bodies (fid INTEGER PRIMARY KEY, text TEXT NOT NULL, code BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS dead (seq INTEGER PRIMARY KEY AUTOINCREMENT, fid INTEGER NOT NULL);
"""
DOCS = sa.table("docs", *map(sa.column, ("fid", "id", "metadata", "doc", "span")))
BODIES = sa.table("bodies", *map(sa.column, ("fid", "text", "code")))
BATCH = 20_000  # rows per read when streaming the whole table
KEYWORD = (
    "SELECT docs.fid, -bm25(fts) FROM fts JOIN docs ON docs.fid = fts.rowid WHERE fts MATCH ? "
    "ORDER BY bm25(fts), docs.fid LIMIT ?"
)


class DocStore:
    """``expect_rows``: the folder holds segments, so a docstore without tables was lost, not new."""

    def __init__(self, file: str | None, expect_rows: bool = False):
        self.file = file or ":memory:"
        self.writing = False
        self.read_only = file is not None and sqlite_files.on_read_only_storage(file)
        connect = sqlite_files.connect_read_only if self.read_only else sqlite3.connect
        self.conn = None
        try:
            self.conn = connect(self.file, isolation_level=None, check_same_thread=False, timeout=60)
            self.postings = Postings(self.conn, "postings", self.all_fids)
            self.sparse = SparseTables(self.conn, "sparse")
            self._check_owner(expect_rows)
            if not self.read_only:
                self._set_up()
        except BaseException as exc:
            damaged = sqlite_files.is_damage(exc) and self._has_tables()  # a docstore whose pages are damaged
            if self.conn is not None:
                self.conn.close()
            if damaged:
                raise sqlite_files.translate(exc, self.file) from None
            if isinstance(exc, sqlite3.DatabaseError):
                raise CorruptIndexError(f"{self.file}: not a usable SQLite database ({exc})") from None
            raise

    def _has_tables(self) -> bool:
        try:
            return self.conn is not None and bool(sqlite_files.tables(self.conn))
        except sqlite3.DatabaseError:
            return False

    def _check_owner(self, expect_rows: bool) -> None:
        """Refuse a database that is not a docstore, before anything is written to it."""
        found = sqlite_files.tables(self.conn)
        if not found and expect_rows:
            raise NotAnIndexError(
                f"{self.file} is empty, but the folder holds segment files: its documents are lost "
                "(restore docs.sqlite from a backup); nothing was written"
            )
        if found and not sqlite_files.is_docstore(self.conn):
            hint = " (it is a SQLIndex database: open it with SQLIndex)" if "embedkit_meta" in found else ""
            raise NotAnIndexError(f"{self.file} is not a FaissIndex docstore{hint}; nothing was written")

    def _set_up(self) -> None:
        self.conn.execute(f"PRAGMA page_size = {sqlite_files.PAGE_SIZE}")
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        names = {row[0] for row in self.conn.execute("SELECT name FROM sqlite_master")}
        application = self.conn.execute("PRAGMA application_id").fetchone()[0]
        if {"docs_by_doc", "fts", "postings"} <= names and application == sqlite_files.DOCSTORE_ID:
            if not names & {"bodies_ai", "bodies_ad", "bodies_au"} and self.get_info("postings") is not None:
                return  # nothing to create or upgrade, so nothing is written (a full disk still opens)
        with self.write():
            for statement in SCHEMA.split(";")[:-1]:
                self.conn.execute(statement)
            self.conn.execute(f"PRAGMA application_id = {sqlite_files.DOCSTORE_ID}")
            columns = {row[1] for row in self.conn.execute("PRAGMA table_info(docs)")}
            for name in ("doc", "span"):  # a docstore from before chunking: every row is a whole document
                if name not in columns:
                    self.conn.execute(f"ALTER TABLE docs ADD COLUMN {name} TEXT")
            self.conn.execute("CREATE INDEX IF NOT EXISTS docs_by_doc ON docs (doc) WHERE doc IS NOT NULL")
            # keyword search over the bodies (a docstore written before it gets its rows indexed once)
            create_sqlite(self.conn.execute, "fts", "bodies", "fid", None, None)
            for name in ("ai", "ad", "au"):  # a docstore from before kept it in step by triggers
                self.conn.execute(f"DROP TRIGGER IF EXISTS bodies_{name}")
            if self.get_info("postings") is None:  # a docstore written before postings gets them once
                self.postings.create()
                add_rows(self.conn.execute, "docs", "postings")
                self.set_info("postings", 1)

    def close(self) -> None:
        self.conn.close()

    def config(self, default: dict) -> dict:
        """The index's settings, recorded from ``default`` when the store is new."""
        config = self.get_info("config")
        if config is None:
            with self.write():
                config = self.get_info("config")
                if config is None:
                    config = default
                    self.set_info("config", config)
        if not isinstance(config, dict) or "kind" not in config or "precision" not in config:
            raise CorruptIndexError(f"{self.file}: the index settings are damaged")
        return config

    def segments(self) -> list[dict]:
        """The manifest's entries, checked: each names a segment file in the folder (not a path or a link)
        and holds its fid range, rows, floor and digests."""
        entries = self.get_info("segments") or []
        folder = os.path.dirname(self.file)
        for entry in entries if isinstance(entries, list) else [None]:
            name = entry.get("file") if isinstance(entry, dict) else None
            plain = isinstance(name, str) and segment_files.NAME.fullmatch(name)
            if not plain or os.path.islink(os.path.join(folder, name)):
                raise CorruptIndexError(f"{self.file}: the segment entry {name!r} is not a segment file in its folder")
            if not all(isinstance(entry.get(key), int) for key in ("lo", "hi", "n", "floor", "size")):
                raise CorruptIndexError(f"{self.file}: the segment entry {name!r} is damaged")
        return entries

    # ----------------------------------------------------------------- transactions
    @contextlib.contextmanager
    def write(self):
        """A write transaction: writers from every process queue here."""
        self.check_writable()
        self.conn.execute("BEGIN IMMEDIATE")
        self.writing = True
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:  # some SQLite errors (a full disk) roll back by themselves
                self.conn.execute("ROLLBACK")
            raise
        finally:
            self.writing = False

    def check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyIndexError(f"{self.file}: the index is read-only (its folder cannot be written)")

    @contextlib.contextmanager
    def read(self):
        """A read transaction: one consistent snapshot of the file."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    def data_version(self) -> int:
        """Changes whenever another connection commits."""
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    # ----------------------------------------------------------------- info
    def get_info(self, key: str):
        row = self.conn.execute("SELECT value FROM info WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except json.JSONDecodeError:
            raise CorruptIndexError(f"{self.file}: info {key!r} is not valid JSON") from None

    def set_info(self, key: str, value) -> None:
        self.conn.execute("INSERT OR REPLACE INTO info VALUES (?, ?)", (key, json.dumps(value)))

    # ----------------------------------------------------------------- writes (inside write())
    def fids_of(self, ids: list[str]) -> np.ndarray:
        """The fids of every chunk of the documents ``ids`` (SQLite serves the OR from both indexes)."""
        return self.fids_where(None, ids)

    def documents_among(self, fids: np.ndarray) -> int:
        """How many of ``fids`` are documents' first rows."""
        sql = "SELECT count(*) FROM docs WHERE fid IN (SELECT value FROM json_each(?)) AND doc IS NULL"
        return self.conn.execute(sql, (json.dumps(fids.tolist()),)).fetchone()[0]

    def count(self) -> int:
        """Live documents."""
        return self.conn.execute("SELECT count(*) FROM docs WHERE doc IS NULL").fetchone()[0]

    def kill(self, fids: np.ndarray) -> None:
        """Delete rows (and their postings) and log their fids."""
        if len(fids):
            arg = (json.dumps(fids.tolist()),)
            sql = "SELECT d.fid, d.metadata, b.text FROM docs d JOIN bodies b ON b.fid = d.fid WHERE d.fid IN "
            rows = self.conn.execute(sql + "(SELECT value FROM json_each(?))", arg).fetchall()
            self.postings.remove([r[0] for r in rows], [r[1] for r in rows])
            words = [("delete", fid, text) for fid, _, text in rows if text]  # a later chunk's text is ''
            self.conn.executemany("INSERT INTO fts (fts, rowid, text) VALUES (?, ?, ?)", words)
            self.conn.execute("DELETE FROM docs WHERE fid IN (SELECT value FROM json_each(?))", arg)
            self.conn.execute("DELETE FROM bodies WHERE fid IN (SELECT value FROM json_each(?))", arg)
            self.conn.execute("INSERT INTO dead (fid) SELECT value FROM json_each(?)", arg)
            self.sparse.remove(fids)

    def insert(
        self, ids, texts, metadatas: list[str], codes: np.ndarray, fids=None, docs=None, spans=None, sparse=None
    ) -> np.ndarray:
        """Insert rows under fresh, consecutive fids (or the given ones) and return the fids; ``docs`` and
        ``spans`` (JSON) describe chunks, ``sparse`` holds the rows' sparse vectors."""
        if fids is None:
            row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'docs'").fetchone()
            start = (row[0] if row else 0) + 1
            fids = np.arange(start, start + len(ids), dtype=np.int64)
        fids = np.asarray(fids, dtype=np.int64)
        docs, spans = docs or [None] * len(ids), spans or [None] * len(ids)
        self.conn.executemany(
            "INSERT INTO docs (fid, id, metadata, doc, span) VALUES (?, ?, ?, ?, ?)",
            zip(fids.tolist(), ids, metadatas, docs, spans),
        )
        self.conn.executemany(
            "INSERT INTO bodies (fid, text, code) VALUES (?, ?, ?)",
            zip(fids.tolist(), texts, (c.tobytes() for c in codes)),
        )
        words = [(fid, text) for fid, text in zip(fids.tolist(), texts) if text]  # a later chunk's text is ''
        self.conn.executemany("INSERT INTO fts (rowid, text) VALUES (?, ?)", words)
        if len(fids):
            add_rows(self.conn.execute, "docs", "postings", int(fids.min()), int(fids.max()))
        if sparse is not None:
            self.sparse.write(fids, sparse)
        return fids

    # ----------------------------------------------------------------- reads
    def high_water(self) -> tuple[int, int]:
        """(highest fid ever given, highest dead seq)."""
        rows = dict(self.conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        return rows.get("docs", 0), rows.get("dead", 0)

    def rows_after(self, fid: int, dtype, dim: int, upto: int | None = None):
        """(fids, codes) of the live rows above ``fid`` (up to ``upto``), in batches."""
        upto = (1 << 62) if upto is None else upto
        sql = "SELECT fid, code FROM bodies WHERE fid > ? AND fid <= ? ORDER BY fid LIMIT ?"
        for rows in self._batches(sql, fid, upto):
            yield np.array([r[0] for r in rows], dtype=np.int64), self.code_array(rows, dtype, dim)

    def _batches(self, sql: str, fid: int = 0, *args):
        """The rows of ``sql`` (fid first; its parameters: the fid to start after, ``args``, a limit), read
        ``BATCH`` at a time."""
        while True:
            rows = self.conn.execute(sql, (fid, *args, BATCH)).fetchall()
            if not rows:
                return
            yield rows
            fid = rows[-1][0]

    def all_fids(self) -> np.ndarray:
        """Every row's fid, ascending."""
        return int_keys(self.conn.execute("SELECT fid FROM docs ORDER BY fid"))

    def dead_log_after(self, seq: int) -> tuple[np.ndarray, np.ndarray]:
        """(seqs, fids) of the delete log after ``seq``."""
        rows = self.conn.execute("SELECT seq, fid FROM dead WHERE seq > ? ORDER BY seq", (seq,)).fetchall()
        log = np.array(rows, dtype=np.int64).reshape(-1, 2)
        return log[:, 0], log[:, 1]

    def count_between(self, lo: int, hi: int) -> int:
        """Live rows with ``lo <= fid <= hi``."""
        return self.conn.execute("SELECT count(*) FROM docs WHERE fid BETWEEN ? AND ?", (lo, hi)).fetchone()[0]

    def codes(self, fids: np.ndarray, dtype, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(fids, codes) of the live rows among ``fids``, in fid order."""
        rows = self.conn.execute(
            "SELECT fid, code FROM bodies WHERE fid IN (SELECT value FROM json_each(?)) ORDER BY fid",
            (json.dumps(fids.tolist()),),
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64), self.code_array(rows, dtype, dim)

    def records(self, fids, codes: bool = False) -> dict[int, Found]:
        """fid -> Found(id, text, metadata, span, code) for the live rows among ``fids``, read in one
        statement: a later chunk's text is its document's, of the same version as its span; ``code`` (the
        row's own, with ``codes``) too."""
        rows = self.conn.execute(
            "SELECT d.fid, d.id, b.text, d.metadata, d.span" + (", o.code" if codes else ", NULL") + " FROM docs d "
            "JOIN docs h ON h.id = coalesce(d.doc, d.id) JOIN bodies b ON b.fid = h.fid "
            + ("JOIN bodies o ON o.fid = d.fid " if codes else "")
            + "WHERE d.fid IN (SELECT value FROM json_each(?))",
            (json.dumps([int(f) for f in fids]),),
        ).fetchall()
        metadatas = parse_metadatas(self.file, [r[1] for r in rows], [r[3] for r in rows])
        return {r[0]: Found(r[1], r[2], md, load_span(r[4]), r[5]) for r, md in zip(rows, metadatas)}

    def by_id(self, ids: list[str], chunks: bool = False) -> list[Row]:
        """The live rows among ``ids``, and with ``chunks`` the later chunks of those documents."""
        d, b = DOCS.c, BODIES.c
        query = sa.select(d.id, d.fid, b.text, d.metadata, b.code, d.doc, d.span).join_from(
            DOCS, BODIES, d.fid == b.fid
        )
        return [Row(*r) for r in self._execute(self._where(query, None, ids, chunks=chunks))]

    def matching(self, node, after: int | None, touched: np.ndarray, postings: bool = True) -> np.ndarray:
        """Fids of the rows that match ``node``: all of them (through the postings, where the docstore has
        them), or those above ``after`` or in ``touched`` (parsing their metadata)."""
        if after is None and postings and self.get_info("postings") is not None:
            return self.postings.match(node)
        where = compile_filter(node, DOCS.c.metadata, "sqlite")
        if after is not None:
            recent = sa.or_(DOCS.c.fid > after, DOCS.c.fid.in_(json_ints(touched)))
            where = sa.and_(recent, where)
        return int_keys(self._execute(sa.select(DOCS.c.fid).where(where)))

    def keyword(self, query: str, node, k: int) -> list[tuple[int, float]]:
        """(fid, relevance) of the ``k`` best keyword matches of ``query`` that satisfy ``node`` (without a
        filter, one fixed statement: building it with SQLAlchemy cost as much as running it)."""
        if node is None:
            match = terms.fts5_query(query)
            return [] if match is None else self.conn.execute(KEYWORD, (match, k)).fetchall()
        found = fts5_select("fts", DOCS, DOCS.c.fid, [DOCS.c.fid], query)
        if found is None:
            return []
        statement, rank = found
        statement = self._where(statement, node, None).order_by(rank, DOCS.c.fid).limit(k)
        return [(fid, score) for fid, score in self._execute(statement)]

    def fids_where(self, node, ids: list[str] | None) -> np.ndarray:
        """Fids of the rows that match ``node``, among ``ids`` if given."""
        return np.sort(int_keys(self._execute(self._where(sa.select(DOCS.c.fid), node, ids, chunks=True))))

    def select(self, node, ids: list[str] | None, limit: int | None, offset: int, after: str | None) -> list[tuple]:
        """(id, text, metadata) of the rows that match ``node`` (among ``ids``), in id order, ids above ``after``."""
        query = sa.select(DOCS.c.id, BODIES.c.text, DOCS.c.metadata).join_from(DOCS, BODIES, DOCS.c.fid == BODIES.c.fid)
        query = self._where(query, node, ids).where(DOCS.c.doc.is_(None)).order_by(DOCS.c.id)
        if after is not None:
            query = query.where(DOCS.c.id > after)
        rows = self._execute(query.limit(limit).offset(offset or None)).fetchall()
        metadatas = parse_metadatas(self.file, [r[0] for r in rows], [r[2] for r in rows])
        return [(doc_id, text, md) for (doc_id, text, _), md in zip(rows, metadatas)]

    @staticmethod
    def _where(query, node, ids: list[str] | None, chunks: bool = False):
        """``query`` restricted to ``node`` and ``ids`` (with ``chunks``, also the later chunks of ``ids``)."""
        if node is not None:
            query = query.where(compile_filter(node, DOCS.c.metadata, "sqlite"))
        if ids is None:
            return query
        among = DOCS.c.id.in_(json_values(ids))
        return query.where(sa.or_(among, DOCS.c.doc.in_(json_values(ids))) if chunks else among)

    def _execute(self, query):
        """Run a SQLAlchemy query on the sqlite3 connection (bound parameters only)."""
        compiled = query.compile(dialect=sqlite.dialect(), compile_kwargs={"render_postcompile": True})
        params = compiled.params  # built anew on every access
        return self.conn.execute(str(compiled), [params[k] for k in compiled.positiontup])

    def code_array(self, rows, dtype, dim: int) -> np.ndarray:
        """The codes of ``rows`` of (fid, code) as one array; a code of the wrong size names its document."""
        width = dim * np.dtype(dtype).itemsize
        for fid, code in rows:
            if len(code) != width:
                (doc_id,) = self.conn.execute("SELECT id FROM docs WHERE fid = ?", (fid,)).fetchone() or (fid,)
                raise CorruptIndexError(
                    f"{self.file}: the vector of document {doc_id!r} has {len(code)} bytes, not {width}"
                )
        return np.frombuffer(b"".join(r[1] for r in rows), dtype=dtype).reshape(len(rows), dim)
