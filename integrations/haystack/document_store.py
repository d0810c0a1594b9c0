"""``EmbedkitDocumentStore``: Haystack's DocumentStore protocol over any ``integrations.Index``."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from embedkit._optional import missing

try:
    from haystack import default_from_dict, default_to_dict
    from haystack.dataclasses import ByteStream, Document, SparseEmbedding
    from haystack.document_stores.errors import DuplicateDocumentError
    from haystack.document_stores.types import DuplicatePolicy
    from haystack.errors import FilterError as HaystackFilterError
    from haystack.utils.filters import document_matches_filter
except ImportError as exc:
    raise missing("haystack", "haystack", "integrations.haystack") from exc

from integrations._shared import pushdown
from integrations.errors import FilterError
from integrations.filters import haystack as translation
from integrations.filters.haystack import RESERVED
from integrations.index import Index
from integrations.records import Record
from integrations.targets import open_index

JSON_TYPES = {bool: "boolean", int: "long", float: "float", str: "keyword", list: "keyword", dict: "object"}


class EmbedkitDocumentStore:
    """Haystack documents in an embedkit index: FAISS (a folder, or memory), SQLite or PostgreSQL.

    ``target`` and ``model`` are what ``open_index`` takes (a URL, a folder or None; a model name or path,
    all-MiniLM-L6-v2 by default, or a loaded encoder), ``index_options`` its keywords (``kind``,
    ``precision``, ``table``, ``chunk_tokens``, ``sparse_encoder`` as a SparseEncoder's name or path, ...);
    or pass an open ``index``. A document without an
    embedding is embedded by the index's model with its passage prompt, so every document can be found,
    and still reads back with ``embedding=None``. Embeddings read back L2-normalized (the index stores
    cosine geometry). Filters take Haystack's syntax and semantics (``integrations.filters.haystack``);
    documents come back in id order.
    """

    def __init__(
        self,
        target: str | None = None,
        model: Any = None,
        index_options: dict[str, Any] | None = None,
        *,
        index: Index | None = None,
    ):
        self.target, self.model, self.index_options = target, model, dict(index_options or {})
        if index is None:
            if model is None or isinstance(model, str):
                from embedkit import SentenceTransformer

                encoder = SentenceTransformer(model or "all-MiniLM-L6-v2")
            else:
                encoder = model
            options = dict(self.index_options)
            if isinstance(options.get("sparse_encoder"), str):  # a name or path, so that the store serializes
                from embedkit import SparseEncoder

                options["sparse_encoder"] = SparseEncoder(options["sparse_encoder"])
            index = open_index(target, encoder, **options)
        elif not isinstance(index, Index):
            raise TypeError(f"index must be an integrations.Index, got {type(index).__name__}")
        self.index = index

    # ----------------------------------------------------------------- serialization
    def to_dict(self) -> dict[str, Any]:
        """The store's ``target``, ``model`` and ``index_options``; it needs a model name or path (and,
        for a store over an open ``index``, the ``target`` and ``model`` it was opened with)."""
        if not isinstance(self.model, str):
            raise TypeError(
                "to_dict() needs the store built from a model name or path (pass model=, and target= "
                "for a store over an open index), not a loaded model"
            )
        return default_to_dict(self, target=self.target, model=self.model, index_options=self.index_options)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbedkitDocumentStore:
        return default_from_dict(cls, data)

    # ----------------------------------------------------------------- the protocol
    def count_documents(self) -> int:
        return len(self.index)

    def filter_documents(self, filters: dict[str, Any] | None = None) -> list[Document]:
        return [to_document(r) for r in self.select(filters, include_vectors=True)]

    def write_documents(self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE) -> int:
        """Write ``documents``, all or none. ``NONE`` means ``FAIL``: an id already stored (or twice in the
        batch) raises DuplicateDocumentError and writes nothing; ``SKIP`` keeps what is stored;
        ``OVERWRITE`` replaces it. Returns how many were written."""
        if not isinstance(documents, list) or not all(isinstance(d, Document) for d in documents):
            raise ValueError("write_documents() expects a list of haystack Documents")
        if policy == DuplicatePolicy.OVERWRITE:
            documents = list({d.id: d for d in documents}.values())
        else:
            stored = {r.id for r in self.index.get([d.id for d in documents])} if documents else set()
            if policy == DuplicatePolicy.SKIP:  # the first of each id, unless stored already
                first: dict[str, Document] = {}
                for d in documents:
                    first.setdefault(d.id, d)
                documents = [d for d in first.values() if d.id not in stored]
            else:
                seen = set()
                for d in documents:
                    if d.id in stored or d.id in seen:
                        raise DuplicateDocumentError(f"ID '{d.id}' already exists in the document store")
                    seen.add(d.id)
        if documents:
            self._write(documents)
        return len(documents)

    def delete_documents(self, document_ids: list[str]) -> None:
        self.index.delete(list(document_ids))

    # ----------------------------------------------------------------- the extended suites
    def delete_all_documents(self) -> None:
        pushdown.delete(self.index, None, self._matcher(None))

    def delete_by_filter(self, filters: dict[str, Any]) -> int:
        return pushdown.delete(self.index, self._translate(filters), self._matcher(filters))

    def update_by_filter(self, filters: dict[str, Any], meta: dict[str, Any]) -> int:
        """Merge ``meta`` into the metadata of every matching document (one transaction); returns how many."""
        if not isinstance(meta, dict):
            raise ValueError(f"meta must be a dict, got {type(meta).__name__}")
        records = self.select(filters)
        if records:
            self.index.update_metadata([r.id for r in records], [{**r.metadata, **meta} for r in records])
        return len(records)

    def count_documents_by_filter(self, filters: dict[str, Any]) -> int:
        return len(self.select(filters))

    def count_unique_metadata_by_filter(self, filters: dict[str, Any], metadata_fields: list[str]) -> dict[str, int]:
        records = self.select(filters)
        return {f: len({_key(v) for v in _values(records, f)}) for f in metadata_fields}

    def get_metadata_fields_info(self) -> dict[str, dict[str, str]]:
        info: dict[str, dict[str, str]] = {}
        for record in self.index:
            for name, value in _user_meta(record).items():
                info.setdefault(name, {"type": JSON_TYPES.get(type(value), "keyword")})
        return info

    def get_metadata_field_min_max(self, metadata_field: str) -> dict[str, Any]:
        stored = _values(list(self.index), metadata_field)  # read once
        values = [v for v in stored if _number(v)] or [v for v in stored if isinstance(v, str)]
        return {"min": min(values), "max": max(values)} if values else {"min": None, "max": None}

    def get_metadata_field_unique_values(
        self,
        metadata_field: str,
        search_term: str | None = None,
        from_: int = 0,
        size: int = 10,
        filters: dict[str, Any] | None = None,
    ) -> tuple[list[Any], int]:
        """Distinct values of a field (``1``, ``1.0``, ``True`` and ``"1"`` apart), sorted, paged; with the total."""
        distinct = {_key(v): v for v in _values(self.select(filters), metadata_field)}
        values = list(distinct.values())
        if search_term is not None:
            values = [v for v in values if search_term.lower() in str(v).lower()]
        values.sort(key=lambda v: (type(v).__name__, json.dumps(v, sort_keys=True) if not _number(v) else v))
        return values[from_ : from_ + size], len(values)

    # ----------------------------------------------------------------- shared with the retrievers
    def select(self, filters: dict[str, Any] | None, include_vectors: bool = False) -> list[Record]:
        return pushdown.select(self.index, self._translate(filters), self._matcher(filters), include_vectors)

    def search(self, run, k: int, filters: dict[str, Any] | None) -> list:
        """``run(depth, filter)`` under a Haystack filter: the store's hits that the filter matches."""
        return pushdown.search(run, k, self._translate(filters), self._matcher(filters))

    @staticmethod
    def _translate(filters):
        try:
            return translation.translate(filters)
        except FilterError as exc:
            raise HaystackFilterError(str(exc)) from exc

    @staticmethod
    def _matcher(filters):
        return lambda record: document_matches_filter(filters, to_document(record))

    def _write(self, documents: list[Document]) -> None:
        """Documents without embeddings are embedded by the index's model, and so is a document longer than
        the model takes: it is stored as chunks, each embedded whole, as ``Index.add`` stores a long text,
        instead of under one vector of its first tokens. In an index that keeps sparse vectors, their
        ``sparse_embedding`` is stored as the sparse vector when every document has one (else the index's
        sparse encoder embeds them all)."""
        texts = [d.content or "" for d in documents]
        metas = [stored_meta(d) for d in documents]
        ids = [d.id for d in documents]
        sparse = None
        if self.index.sparse.recorded is not None and all(d.sparse_embedding is not None for d in documents):
            sparse = [dict(zip(d.sparse_embedding.indices, d.sparse_embedding.values)) for d in documents]
        vectors = [d.embedding for d in documents]
        self.index.add_embeddings(vectors, texts, metas, ids=ids, sparse_embeddings=sparse, embed_long=True)


def _in_a_thread(name: str):
    async def method(self, *args, **kwargs):
        return await asyncio.to_thread(getattr(self, name), *args, **kwargs)

    method.__name__ = method.__qualname__ = f"{name}_async"
    method.__doc__ = f"``{name}`` in a worker thread, so that the event loop goes on meanwhile."
    return method


ASYNC = (
    "count_documents",
    "filter_documents",
    "write_documents",
    "delete_documents",
    "delete_all_documents",
    "delete_by_filter",
    "update_by_filter",
    "count_documents_by_filter",
    "count_unique_metadata_by_filter",
    "get_metadata_fields_info",
    "get_metadata_field_min_max",
    "get_metadata_field_unique_values",
)
for _name in ASYNC:  # Haystack's async protocol: each method's ``_async`` twin
    setattr(EmbedkitDocumentStore, f"{_name}_async", _in_a_thread(_name))


def stored_meta(document: Document) -> dict[str, Any]:
    """A Document's metadata as stored: its ``meta``, with what else it carries under ``_haystack``."""
    if RESERVED in document.meta:
        raise ValueError(f"meta key {RESERVED!r} is reserved by EmbedkitDocumentStore")
    extra: dict[str, Any] = {}
    if document.embedding is None:
        extra["embedding"] = None
    if document.content is None:
        extra["content"] = None
    if document.blob is not None:
        blob = document.blob
        extra["blob"] = {
            "data": base64.b64encode(blob.data).decode("ascii"),
            "mime_type": blob.mime_type,
            "meta": blob.meta,
        }
    if document.sparse_embedding is not None:
        extra["sparse_embedding"] = document.sparse_embedding.to_dict()
    return {**document.meta, RESERVED: extra} if extra else dict(document.meta)


def to_document(record: Record) -> Document:
    extra = record.metadata.get(RESERVED, {})
    blob = extra.get("blob")
    sparse = extra.get("sparse_embedding")
    embedding = None if "embedding" in extra or record.vector is None else record.vector.tolist()
    text = record.passage if getattr(record, "span", None) is not None else record.text
    return Document(
        id=record.id,
        content=None if "content" in extra else text,
        meta=_user_meta(record),
        embedding=embedding,
        score=getattr(record, "score", None),
        blob=None
        if blob is None
        else ByteStream(data=base64.b64decode(blob["data"]), mime_type=blob["mime_type"], meta=blob["meta"]),
        sparse_embedding=None if sparse is None else SparseEmbedding.from_dict(sparse),
    )


def _user_meta(record: Record) -> dict[str, Any]:
    return {k: v for k, v in record.metadata.items() if k != RESERVED}


def _values(records: list[Record], field: str) -> list[Any]:
    name = field[len("meta.") :] if field.startswith("meta.") else field
    return [r.metadata[name] for r in records if name in r.metadata and name != RESERVED]


def _key(value: Any) -> str:
    return type(value).__name__ + ":" + json.dumps(value, sort_keys=True)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
