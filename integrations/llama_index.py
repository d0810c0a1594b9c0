"""LlamaIndex adapters: ``EmbedkitEmbedding`` (a ``BaseEmbedding``), ``EmbedkitSparseEmbedding`` (a
``BaseSparseEmbedding``) and ``EmbedkitVectorStore`` (a ``BasePydanticVectorStore`` over any
``integrations.Index``). Needs the ``llama-index`` extra (llama-index-core)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from embedkit._optional import missing

try:
    from llama_index.core.base.embeddings.base_sparse import BaseSparseEmbedding
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.embeddings import BaseEmbedding
    from llama_index.core.indices.query.embedding_utils import get_top_k_mmr_embeddings
    from llama_index.core.schema import BaseNode, MetadataMode
    from llama_index.core.vector_stores.types import (
        BasePydanticVectorStore,
        MetadataFilters,
        VectorStoreQuery,
        VectorStoreQueryMode,
        VectorStoreQueryResult,
    )
    from llama_index.core.vector_stores.utils import (
        build_metadata_filter_fn,
        metadata_dict_to_node,
        node_to_metadata_dict,
    )
except ImportError as exc:
    raise missing("llama_index", "llama-index", "integrations.llama_index") from exc

from embedkit import SentenceTransformer, SparseEncoder
from integrations._shared import pushdown
from integrations.filters import llama_index as translation
from integrations.filters.bounds import FALSE, all_of, exact, unknown
from integrations.index import Index
from integrations.records import Record
from integrations.sparse import as_dict, vectors_of

MODES = {
    VectorStoreQueryMode.DEFAULT: "vector",
    VectorStoreQueryMode.TEXT_SEARCH: "keyword",
    VectorStoreQueryMode.SPARSE: "sparse",
    VectorStoreQueryMode.HYBRID: "hybrid",
    VectorStoreQueryMode.MMR: "vector",
}


class EmbedkitEmbedding(BaseEmbedding):
    """LlamaIndex embeddings from an embedkit model: text (documents) gets the passage prompt, queries the
    query prompt. ``model`` may be a loaded ``SentenceTransformer``; else ``model_name`` (with
    ``cache_folder`` and ``model_kwargs``) is loaded. ``encode_kwargs`` go to every encode call."""

    model_name: str = Field(default="all-MiniLM-L6-v2", description="The embedkit model's name or path.")
    cache_folder: str | None = Field(default=None, description="Where models are cached.")
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="Keywords for the model.")
    encode_kwargs: dict[str, Any] = Field(default_factory=dict, description="Keywords for each encode call.")
    show_progress: bool = Field(default=False, description="Show a progress bar while encoding.")
    _model: SentenceTransformer = PrivateAttr()

    def __init__(self, model: SentenceTransformer | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if model is None:
            model = SentenceTransformer(self.model_name, cache_folder=self.cache_folder, **self.model_kwargs)
        elif not isinstance(model, SentenceTransformer):
            raise TypeError(f"model must be an embedkit SentenceTransformer, got {type(model).__name__}")
        else:
            self.model_name = str(model.model_name or self.model_name)
        self._model = model

    @classmethod
    def class_name(cls) -> str:
        return "EmbedkitEmbedding"

    def _encode(self, method: str, texts):
        options = {"batch_size": self.embed_batch_size, "show_progress_bar": self.show_progress}
        return getattr(self._model, method)(texts, **{**options, **self.encode_kwargs}).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encode("encode_query", query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._encode("encode_document", text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encode("encode_document", list(texts))

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)


class EmbedkitSparseEmbedding(BaseSparseEmbedding):
    """LlamaIndex sparse embeddings ({dimension: weight}) from an embedkit ``SparseEncoder`` (SPLADE): texts
    with its document side, queries with its query side. ``model`` may be a loaded ``SparseEncoder``; else
    ``model_name`` (with ``model_kwargs``) is loaded."""

    model_name: str = Field(description="The SparseEncoder's name or path.")
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="Keywords for the model.")
    _model: SparseEncoder = PrivateAttr()

    def __init__(self, model: SparseEncoder | None = None, **kwargs: Any):
        if model is not None and not isinstance(model, SparseEncoder):
            raise TypeError(f"model must be an embedkit SparseEncoder, got {type(model).__name__}")
        if model is not None:
            kwargs.setdefault("model_name", str(model.model_name or "SparseEncoder"))
        super().__init__(**kwargs)
        self._model = model if model is not None else SparseEncoder(self.model_name, **self.model_kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "EmbedkitSparseEmbedding"

    def _encode(self, method: str, texts: list[str]) -> list[dict[int, float]]:
        output = getattr(self._model, method)(texts, batch_size=self.embed_batch_size)
        return [as_dict(v) for v in vectors_of(output, len(texts))]

    def _get_query_embedding(self, query: str) -> dict[int, float]:
        return self._encode("encode_query", [query])[0]

    def _get_text_embedding(self, text: str) -> dict[int, float]:
        return self._encode("encode_document", [text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[dict[int, float]]:
        return self._encode("encode_document", list(texts))

    async def _aget_query_embedding(self, query: str) -> dict[int, float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> dict[int, float]:
        return await asyncio.to_thread(self._get_text_embedding, text)


class EmbedkitVectorStore(BasePydanticVectorStore):
    """LlamaIndex nodes in an embedkit index (FAISS, SQLite or PostgreSQL), stored whole: text in the
    index's text, the rest of the node (metadata, ``ref_doc_id``, relationships) in its metadata, as
    LlamaIndex's ``node_to_metadata_dict`` writes it. Filters are ``MetadataFilters`` with LlamaIndex's
    semantics (``integrations.filters.llama_index``). Query modes: ``DEFAULT`` (cosine), ``TEXT_SEARCH``
    (the store's full-text index), ``SPARSE`` (learned sparse vectors, in an index made with
    ``sparse_encoder=``), ``HYBRID`` (reciprocal rank fusion of every leg the index has, ``Index.search``
    deep, or ``similarity_top_k``/``sparse_top_k`` deep with ``hybrid_top_k`` results; ``alpha`` weighs the
    vector leg against the sparse one, or the keyword one without it) and ``MMR`` (``mmr_threshold``,
    LlamaIndex's own MMR over ``mmr_prefetch_k`` candidates)."""

    stores_text: bool = True
    flat_metadata: bool = False
    _index: Index = PrivateAttr()

    def __init__(self, index: Index, **kwargs: Any):
        if not isinstance(index, Index):
            raise TypeError(f"index must be an integrations.Index, got {type(index).__name__}")
        super().__init__(**kwargs)
        self._index = index

    @classmethod
    def class_name(cls) -> str:
        return "EmbedkitVectorStore"

    @property
    def client(self) -> Index:
        return self._index

    def embedding(self) -> EmbedkitEmbedding:
        """An ``EmbedkitEmbedding`` over the index's own model (an embedkit SentenceTransformer)."""
        return EmbedkitEmbedding(self._index.encoder)

    # ----------------------------------------------------------------- writes
    def add(self, nodes: list[BaseNode], **kwargs: Any) -> list[str]:
        """Store ``nodes`` (replacing any with the same id), all or none. Nodes without an embedding are
        embedded by the index's model with its passage prompt, and so is a node longer than the model takes
        (LlamaIndex's 1,024-token nodes, say): it is stored as chunks, each embedded whole, as ``Index.add``
        stores a long text, instead of under one vector of its first tokens."""
        if not nodes:
            return []
        ids = [n.node_id for n in nodes]
        texts = [n.get_content(metadata_mode=MetadataMode.NONE) for n in nodes]
        metadatas = [node_to_metadata_dict(n, remove_text=True, flat_metadata=self.flat_metadata) for n in nodes]
        vectors = [n.embedding for n in nodes]
        return self._index.add_embeddings(vectors, texts, metadatas, ids=ids, embed_long=True)

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the source document ``ref_doc_id``."""
        self._index.delete(filter={"ref_doc_id": ref_doc_id})

    def delete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        """Delete the nodes of ``node_ids`` that match ``filters`` (either may be left out, not both:
        ``clear()`` deletes everything)."""
        if node_ids is None and filters is None:
            raise ValueError("delete_nodes() needs node_ids, filters or both; clear() deletes every node")
        self._delete(node_ids, filters)

    def clear(self) -> None:
        self._delete(None, None)

    def _delete(self, node_ids: list[str] | None, filters: MetadataFilters | None) -> None:
        ids = None if node_ids is None else list(node_ids)
        pushdown.delete(self._index, translation.translate(filters), lambda r: matches(filters, r.metadata), ids)

    # ----------------------------------------------------------------- reads
    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        """Stored nodes: those of ``node_ids`` (in that order; unknown ids are skipped) or all, filtered."""
        return [_node(r) for r in self._select(node_ids, filters)]

    def _select(self, node_ids, filters) -> list[Record]:
        ids = None if node_ids is None else list(node_ids)
        return pushdown.select(
            self._index, translation.translate(filters), lambda r: matches(filters, r.metadata), ids=ids
        )

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        mode = MODES.get(query.mode)
        if mode is None:
            raise ValueError(f"query mode {query.mode.value!r} is not supported; use one of {[m.value for m in MODES]}")
        if query.alpha is not None and (mode != "hybrid" or not 0 <= query.alpha <= 1):
            raise ValueError(
                f"alpha weighs the legs of a HYBRID query, from 0 to 1; got {query.alpha} in {mode!r} mode"
            )
        k = query.hybrid_top_k if mode == "hybrid" and query.hybrid_top_k else query.similarity_top_k
        bounds = translation.translate(query.filters)
        parts = [] if bounds is None else [bounds]
        if query.doc_ids is not None:
            parts.append(exact({"ref_doc_id": {"$in": list(query.doc_ids)}} if query.doc_ids else FALSE))
        # A VectorStoreIndex over a store that keeps the text always passes node_ids=[]: no restriction.
        allowed = set(query.node_ids) if query.node_ids else None
        if allowed is not None:
            parts.append(unknown())

        def keep(hit) -> bool:
            return (allowed is None or hit.id in allowed) and matches(query.filters, hit.metadata)

        is_mmr = query.mode == VectorStoreQueryMode.MMR
        fetch = max(k, kwargs.get("mmr_prefetch_k", 4 * k)) if is_mmr else k
        hits = pushdown.search(self._runner(query, mode, is_mmr), fetch, all_of(parts) if parts else None, keep)
        if is_mmr:
            hits = _mmr(query.query_embedding, hits, k, kwargs.get("mmr_threshold", query.mmr_threshold))
        nodes = [_node(h) for h in hits]
        return VectorStoreQueryResult(nodes=nodes, similarities=[h.score for h in hits], ids=[h.id for h in hits])

    def _runner(self, query: VectorStoreQuery, mode: str, with_vectors: bool):
        if mode == "vector":
            if query.query_embedding is None:
                raise ValueError(f"query mode {query.mode.value!r} needs query_embedding")
            vector = np.asarray(query.query_embedding, dtype=np.float32)
            return lambda depth, flt: self._index.search_by_vector(
                vector, k=depth, filter=flt, include_vectors=with_vectors
            )
        if not query.query_str:
            raise ValueError(f"query mode {query.mode.value!r} needs query_str")
        options = {}
        if mode == "hybrid" and query.hybrid_top_k:  # then similarity_top_k and sparse_top_k size the legs
            options["candidates"] = max(query.similarity_top_k, query.sparse_top_k or 0)
        if query.alpha is not None:  # the vector leg's weight; the sparse (else keyword) leg's is 1 - alpha
            other = "sparse" if self._index.sparse.encoder is not None else "keyword"
            weighed = (("vector", query.alpha), (other, 1.0 - query.alpha))
            options["weights"] = {leg: weight for leg, weight in weighed if weight > 0}
        return lambda depth, flt: self._index.search(query.query_str, k=depth, filter=flt, mode=mode, **options)

    # ----------------------------------------------------------------- async
    async def async_add(self, nodes: list[BaseNode], **kwargs: Any) -> list[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    async def adelete_nodes(self, node_ids=None, filters=None, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters, **delete_kwargs)

    async def aget_nodes(self, node_ids=None, filters=None) -> list[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)


def matches(filters: MetadataFilters | None, metadata: dict) -> bool:
    """LlamaIndex's own evaluator on one node's metadata, level by level for nested filters; a comparison
    it cannot make (``TypeError``, as ``"a" > 1``) does not match."""
    if filters is None or not filters.filters:
        return True
    results = []
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            results.append(matches(f, metadata))
            continue
        try:
            results.append(build_metadata_filter_fn(lambda _: metadata, MetadataFilters(filters=[f]))(""))
        except TypeError:
            results.append(False)
    condition = translation.name_of(filters.condition or "and")
    if condition == "and":
        return all(results)
    return any(results) if condition == "or" else not any(results)


def _mmr(query_embedding, hits: list, k: int, threshold: float | None) -> list:
    if not hits:
        return []
    scores, ids = get_top_k_mmr_embeddings(
        query_embedding,
        [h.vector.tolist() for h in hits],
        similarity_top_k=k,
        embedding_ids=list(range(len(hits))),
        mmr_threshold=threshold,
    )
    chosen = []
    for i, score in zip(ids, scores):
        hits[i].score = float(score)
        chosen.append(hits[i])
    return chosen


def _node(record: Record) -> BaseNode:
    """A stored node; a hit on a chunk of a long text carries that chunk, as the LangChain adapter does."""
    span = getattr(record, "span", None)
    text = record.text if span is None else record.passage
    if "_node_content" not in record.metadata:  # written by embedkit itself, not through this store
        from llama_index.core.schema import TextNode

        return TextNode(id_=record.id, text=text, metadata=dict(record.metadata))
    node = metadata_dict_to_node(record.metadata, text=text)
    node.embedding = None if record.vector is None else record.vector.tolist()
    return node
