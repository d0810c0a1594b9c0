"""Learned sparse vectors (SPLADE) beside a store's rows in SQLite, and an exact search by their dot product.

Two tables per store, written in the transaction that writes the rows (``prefix`` is the store's):

- ``<prefix>_rows(sid, key, dims, weights)``: each row's sparse vector, its active dimensions (int32) and
  their weights (float32), under the row's ``key`` (a FaissIndex fid, a SQLIndex rowid). ``sid`` is given
  out anew whenever a key is written, so a row written again never meets its old postings.
- ``<prefix>_postings(dim, first, sids, weights)``: per dimension and per write, the sids (int64,
  ascending) that have it and their weights: a write of 5,000 rows of ~250 dimensions is a few thousand
  blobs instead of a million rows. ``first`` is the write's first sid.

Deleting a row deletes its ``_rows`` entry, not its postings: a search scores every posting of the query's
dimensions, then reads the best candidates' keys from ``_rows``, where a deleted row is missing, so the top
k stays exact. ``compact`` drops the postings of deleted rows.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from integrations._shared.codec import int_keys
from integrations.errors import InvalidInputError

logger = logging.getLogger(__name__)

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {p}_rows (sid INTEGER PRIMARY KEY AUTOINCREMENT, key INTEGER NOT NULL UNIQUE, "
    "dims BLOB NOT NULL, weights BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {p}_postings (dim INTEGER NOT NULL, first INTEGER NOT NULL, sids BLOB NOT NULL, "
    "weights BLOB NOT NULL, PRIMARY KEY (dim, first)) WITHOUT ROWID",
)
Vector = tuple[np.ndarray, np.ndarray]  # (active dimensions as int32, their weights as float32)


def vectors_of(embeddings, n: int) -> list[Vector]:
    """The rows of a sparse encoder's output (a torch sparse or dense 2-D tensor, a list of 1-D ones or of
    {dimension: weight} dicts, a scipy sparse matrix or an array) as (dimensions, weights) of their non-zero
    entries; ``n`` rows are expected."""
    if isinstance(embeddings, (list, tuple)):
        rows = [_row(e) for e in embeddings]
    elif hasattr(embeddings, "tocsr"):  # scipy.sparse
        csr = embeddings.tocsr(copy=True)
        csr.sum_duplicates()
        rows = [(csr.indices[a:b], csr.data[a:b]) for a, b in zip(csr.indptr[:-1], csr.indptr[1:])]
    elif hasattr(embeddings, "is_sparse"):  # torch
        coo = (embeddings if embeddings.is_sparse else embeddings.to_sparse()).coalesce()
        index, values = coo.indices().cpu().numpy(), coo.values().detach().cpu().float().numpy()
        bounds = np.searchsorted(index[0], np.arange(coo.shape[0] + 1))
        rows = [(index[1, a:b], values[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    else:
        dense = np.asarray(embeddings, dtype=np.float32)
        if dense.ndim != 2:
            raise InvalidInputError(f"sparse embeddings must be 2-D, got shape {list(dense.shape)}")
        rows = [(np.flatnonzero(row), row[row != 0]) for row in dense]
    if len(rows) != n:
        raise InvalidInputError(f"the sparse encoder gave {len(rows)} vectors for {n} texts")
    out = []
    for dims, weights in rows:
        dims, weights = np.asarray(dims), np.asarray(weights)
        if len(dims) and not 0 <= dims.min() <= dims.max() < 2**31:
            raise InvalidInputError("a sparse embedding's dimensions must lie in [0, 2**31)")
        keep = weights != 0
        dims, weights = dims.astype(np.int32)[keep], weights.astype(np.float32)[keep]
        if not np.isfinite(weights).all():
            raise InvalidInputError("a sparse embedding contains NaN or infinity")
        out.append((dims, weights))
    return out


def _row(embedding) -> Vector:
    if isinstance(embedding, dict):
        if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in embedding):
            raise InvalidInputError("a sparse embedding's dimensions must be integers")
        try:
            return np.fromiter(embedding, np.int64, len(embedding)), np.fromiter(embedding.values(), np.float64)
        except (TypeError, ValueError):
            raise InvalidInputError("a sparse embedding's weights must be numbers") from None
    return vectors_of(embedding.unsqueeze(0) if hasattr(embedding, "unsqueeze") else np.asarray(embedding)[None], 1)[0]


def as_dict(vector: Vector) -> dict[int, float]:
    """A sparse vector as {dimension: weight}."""
    return dict(zip(vector[0].tolist(), vector[1].tolist()))


class SparseTables:
    """The sparse vectors of one store in the SQLite database that ``conn`` (a sqlite3 connection) opens."""

    def __init__(self, conn, prefix: str):
        self.conn, self.prefix = conn, prefix
        self.known = False  # the tables exist (once they do, they stay)

    def create(self) -> None:
        for statement in SCHEMA:
            self.conn.execute(statement.format(p=self.prefix))

    def exist(self) -> bool:
        if not self.known:
            found = self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (f"{self.prefix}_rows",))
            self.known = found.fetchone() is not None
        return self.known

    def write(self, keys, vectors: list[Vector]) -> None:
        """Store ``vectors`` under ``keys`` (replacing what a key held) and post them (inside a write)."""
        keys = [int(k) for k in keys]
        self.remove(keys)
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (f"{self.prefix}_rows",)).fetchone()
        start = (row[0] if row else 0) + 1
        sids = np.arange(start, start + len(keys), dtype=np.int64)
        self.conn.executemany(
            f"INSERT INTO {self.prefix}_rows (sid, key, dims, weights) VALUES (?, ?, ?, ?)",
            ((int(s), k, d.tobytes(), w.tobytes()) for s, k, (d, w) in zip(sids, keys, vectors)),
        )
        self.conn.executemany(
            f"INSERT INTO {self.prefix}_postings VALUES (?, ?, ?, ?)",
            ((dim, start, owners, weights) for dim, owners, weights in blocks(sids, vectors)),
        )

    def remove(self, keys) -> None:
        """Forget the vectors of ``keys`` (their postings are skipped from now on)."""
        keys = [int(k) for k in keys]
        if keys and self.exist():
            self.conn.execute(
                f"DELETE FROM {self.prefix}_rows WHERE key IN (SELECT value FROM json_each(?))", (json.dumps(keys),)
            )

    def vectors(self, keys) -> dict[int, Vector] | None:
        """key -> its sparse vector, for the keys that have one (None: the store keeps none)."""
        if not self.exist():
            return None
        rows = self.conn.execute(
            f"SELECT key, dims, weights FROM {self.prefix}_rows WHERE key IN (SELECT value FROM json_each(?))",
            (json.dumps([int(k) for k in keys]),),
        )
        return {k: (np.frombuffer(d, np.int32), np.frombuffer(w, np.float32)) for k, d, w in rows}

    def search(self, query: Vector, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(key, score) of the ``k`` rows (among the keys ``allowed``) with the largest dot product with
        ``query``, best first (ties by write order); rows that share no dimension with it are not found."""
        weight = dict(zip(query[0].tolist(), query[1].tolist()))
        postings = self.conn.execute(
            f"SELECT dim, sids, weights FROM {self.prefix}_postings WHERE dim IN (SELECT value FROM json_each(?))",
            (json.dumps(list(weight)),),
        ).fetchall()
        if not postings or k <= 0:
            return []
        found, scores = add_up(postings, weight)
        if allowed is not None:
            allowed = np.unique(allowed)
            if len(allowed) * 8 < len(found):  # few allowed rows: keep only their sids before ranking
                keep = np.isin(found, self._sids_of(allowed))
                found, scores = found[keep], scores[keep]
        order = np.lexsort((found, -scores))
        best: list[tuple[int, float]] = []
        start, step = 0, max(4 * k, 64)
        while len(best) < k and start < len(order):
            chunk = order[start : start + step]
            keys = dict(self._keys_of(found[chunk]))  # the live ones
            for i in chunk.tolist():
                key = keys.get(int(found[i]))
                if key is not None and (allowed is None or _member(allowed, key)):
                    best.append((key, float(scores[i])))
            start, step = start + step, step * 4
        return best[:k]

    def compact(self) -> None:
        """Drop the postings of rows that are gone (inside a write)."""
        if not self.exist():
            return
        live = np.sort(int_keys(self.conn.execute(f"SELECT sid FROM {self.prefix}_rows")))
        for dim, first, sids, weights in self.conn.execute(f"SELECT * FROM {self.prefix}_postings").fetchall():
            kept = pruned(sids, weights, live)
            if kept is None:
                continue
            if kept[0]:
                self.conn.execute(
                    f"UPDATE {self.prefix}_postings SET sids = ?, weights = ? WHERE dim = ? AND first = ?",
                    (*kept, dim, first),
                )
            else:
                self.conn.execute(f"DELETE FROM {self.prefix}_postings WHERE dim = ? AND first = ?", (dim, first))

    def _sids_of(self, keys: np.ndarray) -> np.ndarray:
        return int_keys(
            self.conn.execute(
                f"SELECT sid FROM {self.prefix}_rows WHERE key IN (SELECT value FROM json_each(?))",
                (json.dumps(keys.tolist()),),
            )
        )

    def _keys_of(self, sids: np.ndarray) -> list[tuple[int, int]]:
        return self.conn.execute(
            f"SELECT sid, key FROM {self.prefix}_rows WHERE sid IN (SELECT value FROM json_each(?))",
            (json.dumps(sids.tolist()),),
        ).fetchall()


def blocks(sids: np.ndarray, vectors: list[Vector]):
    """The postings of ``vectors`` (written under ``sids``, ascending): per dimension, ascending, the
    dimension, the sids that have it (int64 bytes, ascending) and their weights (float32 bytes)."""
    dims = np.concatenate([d for d, _ in vectors] or [np.zeros(0, np.int32)])
    if not len(dims):
        return
    weights = np.concatenate([w for _, w in vectors])
    owners = np.repeat(sids, [len(d) for d, _ in vectors])
    order = np.lexsort((owners, dims))
    dims, owners, weights = dims[order], owners[order], weights[order]
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(dims)) + 1, [len(dims)]])
    for a, b in zip(bounds[:-1], bounds[1:]):
        yield int(dims[a]), owners[a:b].tobytes(), weights[a:b].tobytes()


def pruned(sids: bytes, weights: bytes, live: np.ndarray) -> tuple[bytes, bytes] | None:
    """A block of postings without the sids missing from ``live`` (sorted), as bytes (empty: none is
    left); None when every sid is live."""
    sids, weights = np.frombuffer(sids, np.int64), np.frombuffer(weights, np.float32)
    keep = np.isin(sids, live, assume_unique=True)
    return None if keep.all() else (sids[keep].tobytes(), weights[keep].tobytes())


def add_up(postings, weight: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    """The sids (ascending) that ``postings`` (rows of dimension, sids as int64 bytes, weights as float32
    bytes) hold, and each one's dot product with the query whose weights are ``weight``."""
    sids = np.concatenate([np.frombuffer(s, np.int64) for _, s, _ in postings])
    products = np.concatenate([np.frombuffer(w, np.float32) * np.float64(weight[d]) for d, _, w in postings])
    found, inverse = np.unique(sids, return_inverse=True)
    return found, np.bincount(inverse, weights=products)


def _member(sorted_keys: np.ndarray, key: int) -> bool:
    at = np.searchsorted(sorted_keys, key)
    return bool(at < len(sorted_keys) and sorted_keys[at] == key)


class SparseLeg:
    """An index's learned sparse leg: its sparse encoder (None: the index has none, or was opened without
    it) and the model the index recorded for it (None: the index keeps no sparse vectors)."""

    def __init__(self, encoder=None):
        self.encoder, self.recorded = encoder, None

    def adopt(self, recorded: dict | None, count, where: str) -> dict | None:
        """Check the encoder against what the index at ``where`` recorded (``count()``: how many documents it
        holds, asked only when an encoder comes to an index without sparse vectors); return the record to
        keep when the index is to start keeping sparse vectors (None: nothing to write)."""
        self.recorded = recorded
        if self.encoder is None:
            return None
        name = getattr(self.encoder, "model_name", None) or type(self.encoder).__name__
        if recorded is None:
            if count := count():
                raise ValueError(
                    f"{where} holds {count} documents without sparse vectors; a sparse encoder can only be "
                    "given to an empty index (add the documents again to one made with sparse_encoder=)"
                )
            self.recorded = {"model": name}
            return self.recorded
        if recorded.get("model") != name:
            logger.warning("%s keeps sparse vectors of %r; it was opened with %r", where, recorded.get("model"), name)
        return None

    def documents(self, pieces: list[str], kept: bool = False) -> list[Vector] | None:
        """The sparse vectors of the texts to store (the encoder's document side), or None without a leg;
        ``kept``: the store has found since opening that it keeps sparse vectors."""
        if self.encoder is None:
            if self.recorded is not None or kept:
                model = (self.recorded or {}).get("model", "recorded since this index was opened")
                raise ValueError(
                    f"this index keeps sparse vectors ({model}): open it with sparse_encoder= to add documents"
                )
            return None
        return vectors_of(self.encoder.encode_document(pieces), len(pieces))

    def given(self, embeddings, n: int) -> list[Vector]:
        """``n`` sparse vectors from the caller (a {dimension: weight} dict is one), for an index that keeps them."""
        if self.recorded is None:
            raise InvalidInputError(
                "this index has no sparse leg: create it with sparse_encoder= to keep sparse vectors"
            )
        return vectors_of([embeddings] if isinstance(embeddings, dict) else embeddings, n)

    def require(self) -> None:
        if self.encoder is None:
            has = f"keeps sparse vectors ({self.recorded.get('model')})" if self.recorded else "has no sparse leg"
            raise InvalidInputError(
                f"a sparse search needs a sparse encoder: this index {has}; open it with sparse_encoder="
            )

    def queries(self, texts: list[str]) -> list[Vector]:
        """The sparse vectors of queries (the encoder's query side)."""
        self.require()
        return vectors_of(self.encoder.encode_query(texts), len(texts))

    def attach(self, records: list, lookup) -> None:
        """Set the ``sparse_vector`` of each record that has none from ``lookup(ids)`` (id -> {dimension:
        weight}: a document's first chunk's), in an index that keeps sparse vectors."""
        records = [r for r in records if r.sparse_vector is None]
        if self.recorded is not None and records:
            found = lookup(list({r.id: None for r in records}))
            for record in records:
                record.sparse_vector = found.get(record.id)
