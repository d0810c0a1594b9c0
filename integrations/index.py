"""The Index base class, the Encoder protocol, and the records an index returns.

Documents are embedded with the passage prompt on ``add`` and queries with the query prompt on
``search``: that rule lives here, once, for every backend.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from abc import ABC, abstractmethod
from typing import Any, overload

import numpy as np

from embedkit.chunking import Chunker
from integrations._shared import passages, validation
from integrations._shared import rerank as reranking
from integrations._shared.chunk_rows import Rows, chunk_rows, deepen, embed
from integrations._shared.facts import Facts
from integrations._shared.fusion import fuse
from integrations._shared.fusion import legs as fusion_legs
from integrations._shared.validation import check_positive_int
from integrations.encoders import as_encoder, check_info, encoder_info
from integrations.errors import IndexClosedError, InvalidInputError, UnknownIdsError, WrongTypeError
from integrations.filters.parse import Node, parse_filter
from integrations.records import Hit, Record
from integrations.sparse import SparseLeg

logger = logging.getLogger(__name__)


PAGE = 1000  # documents per query when iterating over an index
MAX_ROWS = 2**31 - 1  # a larger k, limit or offset asks for more than any backend holds: it is clamped


def guarded(method):
    """``method`` with its backend's errors about damaged or read-only files as this library's own."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        with self._guard():
            return method(self, *args, **kwargs)

    return call


class Index(Facts, ABC):
    """Common interface of the stores: ``add``, ``search``, ``get``, ``delete``, ``update_metadata``,
    ``len`` and iteration over every document (in id order).

    Scores are cosine similarities: vectors are L2-normalized on the way in and out. An index is a
    context manager; ``save()`` makes every write durable (a no-op where each write already is) and
    ``close()`` releases files and connections.

    Long texts are stored as chunks measured in the model's tokens (``chunk_tokens``, ``chunk_overlap``;
    see ``integrations._shared.chunk_rows``) under the caller's id: ``search`` returns each document once, scored by
    its best chunk, with that chunk's character span in ``hit.span``; ``get`` returns whole documents and
    ``delete`` removes every chunk (a later chunk's row id holds ``"\x1f"``, so ids may not).

    With a ``sparse_encoder`` (a ``SparseEncoder``), each row also keeps its learned sparse vector
    (``integrations.sparse``) for ``mode="sparse"`` and the hybrid mode's third leg."""

    def __init__(self, encoder, chunk_tokens: int | None = None, chunk_overlap: int = 32, sparse_encoder=None):
        self.sparse = SparseLeg(sparse_encoder)
        self.encoder = encoder = as_encoder(encoder)
        self.encoder_info = encoder_info(encoder)
        self.dimension = self.encoder_info["dimension"]
        self.chunker = Chunker(encoder, chunk_tokens, chunk_overlap)
        self.closed = False

    # ----------------------------------------------------------------- public API
    @guarded
    def add(self, texts: list[str], metadatas: list[dict] | None = None, ids: list[str] | None = None) -> list[str]:
        """Embed ``texts`` with the document prompt and store them; an existing id is replaced."""
        return self._add("add()", texts, metadatas, ids, None, encode=True)

    @guarded
    def add_embeddings(
        self,
        embeddings,
        texts: list[str],
        metadatas: list[dict] | None = None,
        ids: list[str] | None = None,
        sparse_embeddings=None,
        embed_long: bool = False,
    ) -> list[str]:
        """Store precomputed document vectors (shape [n, dim]) with their texts; in an index that keeps sparse
        vectors, ``sparse_embeddings`` (n rows in any form ``integrations.sparse.vectors_of`` reads) are stored
        instead of the sparse encoder's. With ``embed_long``, rows may be None (embedded here), and a text
        longer than the model takes is stored as chunks embedded here, as ``add`` stores it (its given
        vector saw only its beginning); chunks keep their text's given sparse vector."""
        if not embed_long:
            return self._add("add_embeddings()", texts, metadatas, ids, embeddings, False, sparse_embeddings)
        given = validation.given_vectors(embeddings, texts, self._check_vectors)
        return self._add("add_embeddings()", texts, metadatas, ids, given, True, sparse_embeddings)

    @overload
    def search(self, query: str, k: int = 10, filter: dict | None = None, **options: Any) -> list[Hit]: ...
    @overload
    def search(self, query: list[str], k: int = 10, filter: dict | None = None, **options: Any) -> list[list[Hit]]: ...

    @guarded
    def search(
        self,
        query: str | list[str],
        k: int = 10,
        filter: dict | None = None,
        include_vectors: bool = False,
        mode: str = "vector",
        rrf_k: int = 60,
        candidates: int = 100,
        rerank: Any = None,
        rerank_candidates: int = 50,
        weights: dict[str, float] | None = None,
    ) -> list[Hit] | list[list[Hit]]:
        """The ``k`` best documents for a query (or a list of lists for several), best first.

        ``mode``: ``"vector"`` (cosine similarity), ``"keyword"`` (the backend's full-text index),
        ``"sparse"`` (the dot product of learned sparse vectors, with a ``sparse_encoder``) or ``"hybrid"``
        (every leg the index has, fused by reciprocal rank fusion with constant ``rrf_k``, each leg
        ``candidates`` deep; ``weights`` ({leg: weight}) picks the legs and weighs them; see
        ``integrations._shared.fusion``). The filter applies to every leg. ``include_vectors``
        sets each hit's ``vector`` to its stored (normalized) embedding. ``rerank`` (a CrossEncoder, or a
        callable ``(query, passages) -> scores``) reorders the first ``rerank_candidates`` documents and
        keeps the ``k`` best (see ``integrations._shared.rerank``)."""
        queries = validation.search_arguments(query, mode, rrf_k, candidates)
        node = self._query(k, filter)
        score = None if rerank is None else reranking.scorer(rerank, rerank_candidates, k)
        k, candidates = min(k, MAX_ROWS), min(candidates, MAX_ROWS)
        first = k if score is None else min(rerank_candidates, MAX_ROWS)  # what the first stage fetches
        legs = fusion_legs(mode, weights, self.sparse)
        if not queries:
            return []
        depth = first if mode != "hybrid" else max(first, candidates)
        found = {leg: self._leg(leg, queries, depth, node, include_vectors) for leg in legs}
        if mode == "hybrid":
            results = [fuse(dict(zip(found, hits)), first, rrf_k, weights) for hits in zip(*found.values())]
        else:
            results = found[mode]
        if include_vectors:
            self.sparse.attach([hit for hits in results for hit in hits], self._sparse_vectors)
        if "keyword" in legs:  # a keyword hit's passage: its best chunk
            passages.best_chunks(results, queries, self._chunk_spans)
        if score is not None:
            results = [reranking.rerank_hits(score, q, hits, k, mode) for q, hits in zip(queries, results)]
        passages.remember(results, queries)
        return results[0] if isinstance(query, str) else results

    def _leg(self, leg: str, queries: list[str], k: int, node, include_vectors: bool) -> list[list[Hit]]:
        if leg == "keyword":
            return self._keyword(queries, k, node, include_vectors)
        if leg == "vector":
            vectors = self._check_vectors(self.encoder.encode_query(queries), None)
            return self._dense(vectors, k, node, include_vectors)
        return [self._sparse_top(v, k, node, include_vectors) for v in self.sparse.queries(queries)]

    def _sparse_top(self, vector, k: int, node, include_vectors: bool) -> list[Hit]:
        search = functools.partial(self._sparse, node=node, with_vectors=include_vectors)
        return deepen(search(vector, k), k, functools.partial(search, vector))

    @guarded
    def search_by_vector(
        self, vector, k: int = 10, filter: dict | None = None, include_vectors: bool = False
    ) -> list[Hit] | list[list[Hit]]:
        """Like ``search``, for an embedding (1-D) or a batch of them (2-D)."""
        array = np.asarray(vector.cpu() if hasattr(vector, "cpu") else vector, dtype=np.float32)
        return self._find(array.ndim == 1, array[None] if array.ndim == 1 else array, k, filter, include_vectors)

    @guarded
    def search_by_sparse_vector(
        self, vector, k: int = 10, filter: dict | None = None, include_vectors: bool = False
    ) -> list[Hit]:
        """Like ``search(mode="sparse")``, for a sparse vector ({dimension: weight}, or one row in any form
        ``integrations.sparse.vectors_of`` reads), in an index that keeps sparse vectors."""
        node = self._query(k, filter)
        return self._sparse_top(self.sparse.given(vector, 1)[0], min(k, MAX_ROWS), node, include_vectors)

    @guarded
    def get(
        self,
        ids: list[str] | None = None,
        *,
        filter: dict | None = None,
        limit: int | None = None,
        offset: int = 0,
        include_vectors: bool = False,
    ) -> list[Record]:
        """Stored documents: those of ``ids`` in that order (missing ids are skipped), else every document,
        in id order (code point). ``filter`` keeps the matching ones; ``offset`` and ``limit`` page the result."""
        self._check_open()
        node = parse_filter(filter)
        limit, offset = validation.page(limit, offset, MAX_ROWS)
        if ids is None:
            records = self._select(node, None, limit, offset) if limit != 0 else []
        else:
            ids = self._check_ids(ids)
            found = {r.id: r for r in (self._get(ids) if node is None else self._select(node, ids, None, 0))}
            records = [found[i] for i in ids if i in found]
            records = records[offset : None if limit is None else offset + limit]
        if include_vectors:
            self._attach_vectors(records)
        return records

    def __iter__(self):
        """Every document, in id order, read a page at a time (writes made meanwhile may or may not show)."""
        self._check_open()
        after = None
        while True:
            with self._guard():
                page = self._select(None, None, PAGE, 0, after=after)
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1].id

    @guarded
    def get_vectors(self, ids: list[str]) -> np.ndarray:
        """The stored (normalized) vectors of ``ids``, one row per id; a missing id is a KeyError."""
        self._check_open()
        ids = self._check_ids(ids)
        found = self._vectors(ids) if ids else {}
        missing = [i for i in ids if i not in found]
        if missing:
            raise UnknownIdsError(f"unknown ids: {missing[:5]}")
        return np.stack([found[i] for i in ids]) if ids else np.zeros((0, self.dimension), np.float32)

    @guarded
    def delete(self, ids: list[str] | None = None, *, filter: dict | None = None) -> int:
        """Delete ``ids`` (missing ids are ignored), or the documents matching ``filter``, or those of
        ``ids`` that match it, in one transaction. Returns how many were deleted."""
        self._check_open()
        if ids is None and filter is None:
            raise WrongTypeError("delete() needs ids, a filter or both")
        node = parse_filter(filter)
        if ids is not None:
            ids = list(dict.fromkeys(self._check_ids(ids)))
            if not ids:
                return 0
        return self._delete(ids) if node is None else self._delete_where(node, ids)

    @guarded
    def update_metadata(self, ids: list[str], metadatas: list[dict]) -> None:
        """Replace the metadata of ``ids`` without re-embedding, in one transaction; an unknown id is a
        KeyError and changes nothing."""
        self._check_open()
        ids = self._check_ids(ids)
        if metadatas is None:
            raise WrongTypeError(f"update_metadata() needs a list of {len(ids)} dicts, got None")
        metadatas, ids = self._check_batch(len(ids), metadatas, ids)
        if ids:
            self._update_metadata(ids, metadatas)

    def save(self) -> None:
        """Make every write durable. Backends that commit each write have nothing to do."""
        self._check_open()

    def close(self) -> None:
        """Release connections and files; the index cannot be used afterwards. Closing twice is fine."""
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @abstractmethod
    def __len__(self) -> int: ...

    # ----------------------------------------------------------------- backend hooks
    @abstractmethod
    def _write(self, rows: Rows) -> None:
        """Insert or replace the documents of ``rows.heads`` with these rows (dropping chunks of theirs that
        ``rows`` does not hold), all or nothing."""

    @abstractmethod
    def _search(self, vectors: np.ndarray, k: int, node: Node | None, with_vectors: bool) -> list[list[Hit]]:
        """The ``k`` best rows per query, best first, each read in one snapshot: a hit on a later chunk
        carries its document's text from the same read as its span, so the two always belong together, and
        with ``with_vectors`` its row's stored vector in ``hit.vector``, from that read too."""

    @abstractmethod
    def _keyword(self, queries: list[str], k: int, node: Node | None, with_vectors: bool) -> list[list[Hit]]:
        """The ``k`` best documents per query by the full-text index, filtered, best first (with their stored
        vectors, read with them, for ``with_vectors``)."""

    def _sparse(self, vector, k: int, node: Node | None, with_vectors: bool) -> list[Hit]:
        """The ``k`` best rows by their sparse vectors' dot product with ``vector``, filtered, best first."""
        raise InvalidInputError(f"{type(self).__name__} on {self._settings()} has no sparse leg")

    def _sparse_vectors(self, ids: list[str]) -> dict[str, dict[int, float]]:
        """The stored sparse vectors of ``ids`` (of their first chunks)."""
        return {}

    def _chunk_spans(self, ids: list[str]) -> dict[str, list[tuple[int, int]]]:
        """The spans of the chunks of those of ``ids`` stored as chunks."""
        return {}

    @abstractmethod
    def _get(self, ids: list[str]) -> list[Record]: ...

    @abstractmethod
    def _delete(self, ids: list[str]) -> int:
        """Delete distinct ids, all or nothing."""

    @abstractmethod
    def _vectors(self, ids: list[str]) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def _select(
        self, node: Node | None, ids: list[str] | None, limit: int | None, offset: int, after: str | None = None
    ) -> list[Record]:
        """Documents matching ``node`` (among ``ids`` if given), in id order, with ids above ``after``."""

    @abstractmethod
    def _delete_where(self, node: Node, ids: list[str] | None) -> int:
        """Delete the documents matching ``node`` (among ``ids`` if given), all or nothing."""

    @abstractmethod
    def _update_metadata(self, ids: list[str], metadatas: list[dict]) -> None:
        """Replace metadata, all or nothing; raise KeyError naming unknown ids."""

    # ----------------------------------------------------------------- the one path in and the one path out
    def _add(self, caller: str, texts, metadatas, ids, embeddings, encode: bool, sparse=None) -> list[str]:
        self._check_open()
        texts = validation.texts(texts, caller)
        metadatas, ids = self._check_batch(len(texts), metadatas, ids)
        if encode:  # ``embeddings``: None, or per text a given vector (None: embed it)
            if not texts:
                return []
            plan = self.chunker.plan(texts)  # each text tokenized once: for its chunks and, if whole, the encoder
            rows = chunk_rows(ids, texts, metadatas, plan.spans)
            rows.vectors = self._check_vectors(embed(self.encoder, rows, plan, embeddings), len(rows.ids))
        else:
            vectors = self._check_vectors(embeddings, len(texts))
            rows = chunk_rows(ids, texts, metadatas, [None] * len(texts), vectors)
        if texts:
            given = None if sparse is None else self.sparse.given(sparse, len(texts))
            rows.sparse = self.sparse.documents(rows.pieces) if given is None else rows.per_row(given)
            self._write(rows)
        return ids

    def _find(self, single: bool, queries, k: int, filter: dict | None, include_vectors: bool):
        node = self._query(k, filter)
        vectors = self._check_vectors(queries, None)
        results = self._dense(vectors, min(k, MAX_ROWS), node, include_vectors) if len(vectors) else []
        return results[0] if single else results

    def _dense(self, vectors: np.ndarray, k: int, node, include_vectors: bool) -> list[list[Hit]]:
        """Vector search, one hit per document (see ``deepen``)."""
        return [
            deepen(hits, k, lambda depth, v=vector: self._search(v[None], depth, node, include_vectors)[0])
            for vector, hits in zip(vectors, self._search(vectors, k, node, include_vectors))
        ]

    def _attach_vectors(self, records: list[Record]) -> None:
        """Each record's stored vector, by its id (for ``get``; searches read vectors with their hits)."""
        found = self._vectors(list({r.id: None for r in records})) if records else {}
        for record in records:
            record.vector = found.get(record.id)
        self.sparse.attach(records, self._sparse_vectors)

    # ----------------------------------------------------------------- checks
    @contextlib.contextmanager
    def _guard(self):
        try:
            yield
        except Exception as exc:
            ours = self._translate(exc)
            if ours is None:
                raise
            raise ours from None

    def _translate(self, exc: Exception) -> Exception | None:
        """The error of this library's own that a backend's ``exc`` means (CorruptIndexError for damaged
        files, ReadOnlyIndexError for a write to read-only storage), or None to let it through."""
        return None

    def _query(self, k, filter: dict | None) -> Node | None:
        """Check that the index is open and ``k`` a positive int; the parsed ``filter``."""
        self._check_open()
        check_positive_int("k", k)
        return parse_filter(filter)

    def _check_open(self) -> None:
        if self.closed:
            raise IndexClosedError(f"this {type(self).__name__} is closed")

    def check_info(self, stored: dict[str, Any], where: str) -> None:
        """Refuse to open an index built for another dimension; warn if the model differs."""
        check_info(stored, self.encoder_info, where)

    def _check_vectors(self, embeddings, n: int | None) -> np.ndarray:
        return validation.unit_vectors(embeddings, self.dimension, n)

    _check_ids = staticmethod(validation.ids)
    _check_batch = staticmethod(validation.batch)
