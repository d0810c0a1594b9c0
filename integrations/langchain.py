"""LangChain adapters: ``EmbedkitEmbeddings`` (an ``Embeddings``) and ``EmbedkitVectorStore`` (a
``VectorStore`` over any ``integrations.Index``). Needs the ``langchain`` extra (langchain-core)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from typing import Any

import numpy as np

from embedkit.extras import missing

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore
    from langchain_core.vectorstores.utils import maximal_marginal_relevance
except ImportError as exc:
    raise missing("langchain_core", "langchain", "integrations.langchain") from exc

from embedkit import SentenceTransformer

from .index import Index, Record
from .open import open_index


class EmbedkitEmbeddings(Embeddings):
    """LangChain embeddings from an embedkit model: documents get the passage prompt, queries the query prompt."""

    def __init__(
        self,
        model: str | SentenceTransformer = "all-MiniLM-L6-v2",
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        device: str | None = None,
        show_progress_bar: bool = False,
        **model_kwargs: Any,
    ):
        self.model = (
            model
            if isinstance(model, SentenceTransformer)
            else SentenceTransformer(model, device=device, **model_kwargs)
        )
        self.encode_kwargs = {
            "batch_size": batch_size,
            "normalize_embeddings": normalize_embeddings,
            "truncate_dim": truncate_dim,
            "show_progress_bar": show_progress_bar,
        }

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode_document(list(texts), **self.encode_kwargs).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.model.encode_query(text, **self.encode_kwargs).tolist()

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
        texts = list(texts)
        if ids is not None:
            ids = [i if i else uuid.uuid4().hex for i in ids]
        return self.index.add(texts, [dict(m) for m in metadatas] if metadatas else None, ids=ids)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        if ids is None:
            raise ValueError("delete() needs a list of ids")
        self.index.delete(list(ids))
        return True

    def get_by_ids(self, ids: list[str], /) -> list[Document]:
        return [_document(r) for r in self.index.get(list(ids))]

    # ----------------------------------------------------------------- search
    def similarity_search(self, query: str, k: int = 4, filter: dict | None = None, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter=filter)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        return [(_document(h), h.score) for h in self.index.search(query, k=k, filter=filter)]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[Document]:
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
        query = np.asarray(embedding, dtype=np.float32)
        candidates = self.index.search_by_vector(query, k=max(fetch_k, k), filter=filter)
        if not candidates:
            return []
        vectors = self.index.get_vectors([h.id for h in candidates])
        chosen = maximal_marginal_relevance(
            query / max(np.linalg.norm(query), 1e-12), vectors, lambda_mult=lambda_mult, k=k
        )
        return [_document(candidates[i]) for i in chosen]

    async def amax_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        return await asyncio.to_thread(self.max_marginal_relevance_search, query, k, fetch_k, lambda_mult, **kwargs)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | SentenceTransformer,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        backend: str = "faiss",
        **index_kwargs: Any,
    ) -> EmbedkitVectorStore:
        """Build a store: ``backend="faiss"`` (FaissIndex kwargs: path, kind, precision, ...; with a path,
        every add is durable) or ``"sql"`` (SQLIndex kwargs: url, table). An EmbedkitEmbeddings is
        unwrapped to its model."""
        encoder = embedding.model if isinstance(embedding, EmbedkitEmbeddings) else embedding
        if backend == "faiss":
            index = open_index(index_kwargs.pop("path", None), encoder, **index_kwargs)
        elif backend == "sql":
            index = open_index(index_kwargs.pop("url", "sqlite:///embedkit.db"), encoder, **index_kwargs)
        else:
            raise ValueError(f"backend must be 'faiss' or 'sql', got {backend!r}")
        store = cls(index, embedding if isinstance(embedding, Embeddings) else None)
        store.add_texts(texts, metadatas, ids=ids)
        return store


def _document(record: Record) -> Document:
    return Document(page_content=record.text, metadata=record.metadata, id=record.id)
