"""LangChain adapters: ``EmbedkitEmbeddings`` (an ``Embeddings``), ``EmbedkitVectorStore`` (a
``VectorStore`` over any ``integrations.Index``) and ``EmbedkitReranker`` (a ``BaseDocumentCompressor`` for
``ContextualCompressionRetriever``). Needs the ``langchain`` extra (langchain-core)."""

from __future__ import annotations

import asyncio
import os
import uuid
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from embedkit._checks import check_positive_int
from embedkit._optional import missing

try:
    from langchain_core.documents import BaseDocumentCompressor, Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore
    from langchain_core.vectorstores.utils import maximal_marginal_relevance
except ImportError as exc:
    raise missing("langchain_core", "langchain", "integrations.langchain") from exc

from embedkit import SentenceTransformer
from integrations._shared.rerank import scorer, scores_of
from integrations.faiss import FaissIndex
from integrations.index import Index
from integrations.records import Record
from integrations.targets import open_index


class EmbedkitEmbeddings(Embeddings):
    """LangChain embeddings from an embedkit model: documents get the passage prompt, queries the query prompt.

    Takes the keywords of ``langchain_huggingface.HuggingFaceEmbeddings`` (``model_name``, ``cache_folder``,
    ``model_kwargs`` for the model, ``encode_kwargs`` for documents, ``query_encode_kwargs`` for queries,
    which default to ``encode_kwargs``, ``multi_process``, ``show_progress``), so a port changes only the
    class name. ``model`` may also be a loaded ``SentenceTransformer``.
    """

    def __init__(
        self,
        model: str | SentenceTransformer | None = None,
        *,
        model_name: str = "all-MiniLM-L6-v2",
        cache_folder: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        encode_kwargs: dict[str, Any] | None = None,
        query_encode_kwargs: dict[str, Any] | None = None,
        multi_process: bool = False,
        show_progress: bool = False,
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        device: str | None = None,
    ):
        model = model_name if model is None else model
        if isinstance(model, SentenceTransformer):
            self.model = model
        else:
            kwargs = {"device": device, "cache_folder": cache_folder, **(model_kwargs or {})}
            self.model = SentenceTransformer(model, **kwargs)
        self.model_name = model if isinstance(model, str) else self.model.model_name
        base = {
            "batch_size": batch_size,
            "normalize_embeddings": normalize_embeddings,
            "truncate_dim": truncate_dim,
            "show_progress_bar": show_progress,
        }
        self.encode_kwargs = {**base, **(encode_kwargs or {})}
        self.query_encode_kwargs = {**base, **(query_encode_kwargs or encode_kwargs or {})}
        self.multi_process = multi_process

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._encode(self.model.encode_document, list(texts), self.encode_kwargs).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self._encode(self.model.encode_query, text, self.query_encode_kwargs).tolist()

    def _encode(self, encode, texts, kwargs: dict):
        if not self.multi_process or isinstance(texts, str):
            return encode(texts, **kwargs)
        with self.model.start_multi_process_pool() as pool:
            return encode(texts, pool=pool, **kwargs)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)


class EmbedkitVectorStore(VectorStore):
    """A LangChain VectorStore over an ``integrations.Index`` (FAISS, SQLite or PostgreSQL).

    ``filter`` arguments use the embedkit filter language, e.g. ``{"source": "a.pdf", "page": {"$gte": 2}}``.
    Scores are cosine similarities, best first.
    """

    def __init__(self, index: Index, embedding: Embeddings | None = None):
        if not isinstance(index, Index):
            raise TypeError(f"index must be an integrations.Index, got {type(index).__name__}")
        self.index = index
        self._embedding = embedding

    @property
    def embeddings(self) -> Embeddings | None:
        if self._embedding is None:
            encoder = self.index.encoder
            inner = getattr(encoder, "embeddings", None)
            if isinstance(inner, Embeddings):
                self._embedding = inner
            elif isinstance(encoder, SentenceTransformer):
                self._embedding = EmbedkitEmbeddings(encoder)
        return self._embedding

    # ----------------------------------------------------------------- writes
    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        *,
        ids: list[str | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        _no_others("add_texts", kwargs)
        texts = list(texts)
        if ids is not None:
            ids = [i if i else uuid.uuid4().hex for i in ids]
        return self.index.add(texts, [dict(m) for m in metadatas] if metadatas else None, ids=ids)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        _no_others("delete", kwargs)
        if ids is None:
            raise ValueError("delete() needs a list of ids")
        self.index.delete(list(ids))
        return True

    def get_by_ids(self, ids: list[str], /) -> list[Document]:
        return [_document(r) for r in self.index.get(list(ids))]

    # ----------------------------------------------------------------- search
    def similarity_search(
        self, query: str, k: int = 4, filter: dict | None = None, mode: str = "vector", **kwargs: Any
    ) -> list[Document]:
        """``mode``: ``"vector"``, ``"keyword"``, ``"sparse"`` (an index made with ``sparse_encoder=``) or
        ``"hybrid"`` (see ``Index.search``); ``rrf_k``, ``candidates``, ``weights``, ``rerank`` and
        ``rerank_candidates`` pass through, so that
        ``as_retriever(search_kwargs={"mode": "hybrid", "rerank": cross_encoder})`` reranks a hybrid search.
        A document stored in chunks comes back as its best chunk, with ``metadata["span"]``."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter=filter, mode=mode, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict | None = None, mode: str = "vector", **kwargs: Any
    ) -> list[tuple[Document, float]]:
        _no_others("similarity_search", kwargs, SEARCH_OPTIONS)
        options = {key: kwargs[key] for key in SEARCH_OPTIONS if key in kwargs}
        return [(_document(h), h.score) for h in self.index.search(query, k=k, filter=filter, mode=mode, **options)]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[Document]:
        _no_others("similarity_search_by_vector", kwargs)
        return [
            _document(h)
            for h in self.index.search_by_vector(np.asarray(embedding, dtype=np.float32), k=k, filter=filter)
        ]

    def _select_relevance_score_fn(self):
        return lambda score: (1.0 + score) / 2.0  # cosine in [-1, 1] to relevance in [0, 1]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        _no_others("max_marginal_relevance_search", kwargs)
        vector = self.index.encoder.encode_query([query])[0]
        return self.max_marginal_relevance_search_by_vector(vector, k, fetch_k, lambda_mult, filter=filter)

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        _no_others("max_marginal_relevance_search_by_vector", kwargs)
        query = np.asarray(embedding, dtype=np.float32)
        candidates = self.index.search_by_vector(query, k=max(fetch_k, k), filter=filter, include_vectors=True)
        if not candidates:
            return []
        vectors = np.stack([h.vector for h in candidates])  # a chunked document's best chunk's, as it scored
        chosen = maximal_marginal_relevance(
            query / max(np.linalg.norm(query), 1e-12), vectors, lambda_mult=lambda_mult, k=k
        )
        return [_document(candidates[i]) for i in chosen]

    async def amax_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        return await asyncio.to_thread(self.max_marginal_relevance_search, query, k, fetch_k, lambda_mult, **kwargs)

    # ----------------------------------------------------------------- persistence (no pickle)
    def save_local(self, folder_path: str, index_name: str = "index") -> None:
        """Write a FAISS-backed store to ``folder_path/index_name`` (a FaissIndex folder), as LangChain's FAISS
        store does. Every write of a store with a folder is already durable; this snapshots it, or copies
        it when the store lives in memory or elsewhere."""
        if not isinstance(self.index, FaissIndex):
            raise TypeError(
                f"save_local() saves FAISS-backed stores; this one is a {type(self.index).__name__}, "
                "which keeps every write in its database"
            )
        self.index.save(os.path.join(folder_path, index_name), force=True)

    @classmethod
    def load_local(
        cls,
        folder_path: str,
        embeddings: Embeddings | SentenceTransformer,
        index_name: str = "index",
        allow_dangerous_deserialization: bool = False,
        **kwargs: Any,
    ) -> EmbedkitVectorStore:
        """Open what ``save_local`` wrote, with its stored kind and precision. Nothing is unpickled, so
        ``allow_dangerous_deserialization`` (LangChain's FAISS flag) is accepted and not needed."""
        path = os.path.join(folder_path, index_name)
        settings = FaissIndex.stored_settings(path)
        if settings is None:
            raise FileNotFoundError(f"no FAISS index at {path!r} (save_local writes one there)")
        encoder = embeddings.model if isinstance(embeddings, EmbedkitEmbeddings) else embeddings
        index = FaissIndex(encoder, path=path, **{**settings, **kwargs})
        return cls(index, embeddings if isinstance(embeddings, Embeddings) else None)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | SentenceTransformer,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        target: str | None = None,
        **index_kwargs: Any,
    ) -> EmbedkitVectorStore:
        """Build a store at ``target``, as ``open_index`` takes it: a SQLAlchemy URL (SQLIndex; kwargs
        ``table``, ...), a folder (FaissIndex, every add durable; kwargs ``kind``, ``precision``, ...) or
        None (an in-memory FaissIndex). An EmbedkitEmbeddings is unwrapped to its model. The older
        ``backend="faiss"`` with ``path=`` and ``backend="sql"`` with ``url=`` still work."""
        encoder = embedding.model if isinstance(embedding, EmbedkitEmbeddings) else embedding
        backend = index_kwargs.pop("backend", None)
        if backend is not None:
            if backend not in ("faiss", "sql"):
                raise ValueError(f"backend must be 'faiss' or 'sql', got {backend!r}")
            warnings.warn("from_texts(backend=...) is deprecated; pass target=", DeprecationWarning, stacklevel=2)
        if "path" in index_kwargs or "url" in index_kwargs:
            default = "sqlite:///embedkit.db" if backend == "sql" else None
            target = index_kwargs.pop("path", None) or index_kwargs.pop("url", default)
        elif backend == "sql" and target is None:
            target = "sqlite:///embedkit.db"
        index = open_index(target, encoder, **index_kwargs)
        store = cls(index, embedding if isinstance(embedding, Embeddings) else None)
        store.add_texts(texts, metadatas, ids=ids)
        return store


class EmbedkitReranker(BaseDocumentCompressor):
    """Reorders retrieved documents by a reranker and keeps the ``top_n`` best, each with its score in
    ``metadata["relevance_score"]``. ``model``: an embedkit (or sentence-transformers) CrossEncoder, or a
    callable ``(query, passages) -> scores``."""

    model: Any
    top_n: int = 3

    model_config = {"arbitrary_types_allowed": True}

    def compress_documents(self, documents, query: str, callbacks=None) -> list[Document]:
        documents = list(documents)
        if not documents:
            return []
        check_positive_int("top_n", self.top_n)
        score = scorer(self.model, self.top_n, self.top_n)
        scores = scores_of(score, query, [d.page_content for d in documents])
        order = sorted(range(len(documents)), key=lambda i: -scores[i])[: self.top_n]
        return [
            Document(
                page_content=documents[i].page_content,
                metadata={**documents[i].metadata, "relevance_score": scores[i]},
                id=documents[i].id,
            )
            for i in order
        ]


SEARCH_OPTIONS = ("rrf_k", "candidates", "rerank", "rerank_candidates", "weights")


def _no_others(method: str, kwargs: dict, allowed: tuple = ()) -> None:
    """A misspelt keyword (``filtr=``) is an error, not a search that silently ignores it."""
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"{method}() got unexpected keyword arguments: {', '.join(unknown)}")


def _document(record: Record) -> Document:
    """A search hit on a chunk of a long document carries that chunk as its content, and its characters in
    the document as ``metadata["span"]``: a retriever hands an LLM the passage that matched, and
    ``get_by_ids`` gives the whole document."""
    span = getattr(record, "span", None)
    if span is None:
        return Document(page_content=record.text, metadata=record.metadata, id=record.id)
    return Document(page_content=record.passage, metadata={**record.metadata, "span": list(span)}, id=record.id)
