"""Haystack components over embedkit: embedders, retrievers over ``EmbedkitDocumentStore`` and a ranker.

Each is serializable (``to_dict``/``from_dict``, so pipelines go to YAML and back) and loads its model in
``warm_up`` (or on first ``run``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from embedkit._checks import check_positive_int
from embedkit._optional import missing

try:
    from haystack import Document, component, default_from_dict, default_to_dict
    from haystack.dataclasses import SparseEmbedding
    from haystack.document_stores.types import FilterPolicy, apply_filter_policy
except ImportError as exc:
    raise missing("haystack", "haystack", "integrations.haystack") from exc

from integrations.haystack.document_store import EmbedkitDocumentStore, to_document


def text_of(document: Document, fields: list[str], separator: str) -> str:
    """The text a document is embedded or ranked by: the named meta fields, then its content."""
    parts = [str(document.meta[f]) for f in fields if document.meta.get(f) is not None]
    return separator.join([*parts, document.content or ""])


class DocumentTexts:
    """What the document embedders share: the meta fields put before each document's content, joined by a
    separator. (Subclasses call ``__init__`` by name, as ``@component`` rebuilds each class.)"""

    def __init__(self, meta_fields_to_embed: list[str] | None, embedding_separator: str):
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.embedding_separator = embedding_separator

    def texts(self, documents, complaint: str) -> list[str]:
        """Each document's text to embed; TypeError ``complaint`` for anything but a list of Documents."""
        if not isinstance(documents, list) or not all(isinstance(d, Document) for d in documents):
            raise TypeError(complaint)
        return [text_of(d, self.meta_fields_to_embed, self.embedding_separator) for d in documents]

    def fields(self) -> dict[str, Any]:
        return {"meta_fields_to_embed": self.meta_fields_to_embed, "embedding_separator": self.embedding_separator}


class Serialized:
    """``to_dict``/``from_dict`` of a component whose ``_init_parameters`` are its constructor's arguments."""

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, **self._init_parameters())

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return default_from_dict(cls, data)


class _ModelComponent(Serialized):
    """What the embedders share: a model name or path, loaded once. (``@component`` rebuilds each class,
    so the subclasses call this one by name rather than through ``super()``.)"""

    def __init__(self, model, batch_size, progress_bar, normalize_embeddings, truncate_dim, prompt_name, device):
        check_positive_int("batch_size", batch_size)
        self.model, self.batch_size, self.progress_bar = model, batch_size, progress_bar
        self.normalize_embeddings, self.truncate_dim = normalize_embeddings, truncate_dim
        self.prompt_name, self.device = prompt_name, device
        self._model = None

    def warm_up(self) -> None:
        if self._model is None:
            from embedkit import SentenceTransformer

            self._model = SentenceTransformer(self.model, device=self.device)

    def _encode(self, method: str, texts):
        self.warm_up()
        options = {"prompt_name": self.prompt_name} if self.prompt_name else {}
        return getattr(self._model, method)(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=self.progress_bar,
            normalize_embeddings=self.normalize_embeddings,
            truncate_dim=self.truncate_dim,
            **options,
        )

    def _init_parameters(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "batch_size": self.batch_size,
            "progress_bar": self.progress_bar,
            "normalize_embeddings": self.normalize_embeddings,
            "truncate_dim": self.truncate_dim,
            "prompt_name": self.prompt_name,
            "device": self.device,
        }


@component
class EmbedkitTextEmbedder(_ModelComponent):
    """Embeds a query with the model's query prompt (``prompt_name`` picks another)."""

    def __init__(
        self,
        model: str = "all-MiniLM-L6-v2",
        batch_size: int = 32,
        progress_bar: bool = False,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        prompt_name: str | None = None,
        device: str | None = None,
    ):
        _ModelComponent.__init__(
            self, model, batch_size, progress_bar, normalize_embeddings, truncate_dim, prompt_name, device
        )

    @component.output_types(embedding=list[float])
    def run(self, text: str):
        if not isinstance(text, str):
            raise TypeError(
                f"EmbedkitTextEmbedder expects a string, got {type(text).__name__}; "
                "use EmbedkitDocumentEmbedder for a list of Documents"
            )
        return {"embedding": self._encode("encode_query", text).tolist()}


@component
class EmbedkitDocumentEmbedder(_ModelComponent, DocumentTexts):
    """Embeds Documents with the model's passage prompt; ``meta_fields_to_embed`` are put before the content,
    joined by ``embedding_separator``. Returns copies with ``embedding`` set."""

    def __init__(
        self,
        model: str = "all-MiniLM-L6-v2",
        batch_size: int = 32,
        progress_bar: bool = False,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        prompt_name: str | None = None,
        device: str | None = None,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
    ):
        _ModelComponent.__init__(
            self, model, batch_size, progress_bar, normalize_embeddings, truncate_dim, prompt_name, device
        )
        DocumentTexts.__init__(self, meta_fields_to_embed, embedding_separator)

    def _init_parameters(self) -> dict[str, Any]:
        return {**_ModelComponent._init_parameters(self), **self.fields()}

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]):
        texts = self.texts(
            documents, "EmbedkitDocumentEmbedder expects a list of Documents; use EmbedkitTextEmbedder for text"
        )
        if not documents:
            return {"documents": []}
        vectors = self._encode("encode_document", texts)
        return {"documents": [dataclasses.replace(d, embedding=v.tolist()) for d, v in zip(documents, vectors)]}


class _Retriever:
    """What the retrievers share: the store, default filters and top_k, and the filter policy."""

    def __init__(
        self,
        document_store: EmbedkitDocumentStore,
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        filter_policy: FilterPolicy | str = FilterPolicy.REPLACE,
        return_embedding: bool = False,
    ):
        if not isinstance(document_store, EmbedkitDocumentStore):
            raise TypeError(f"document_store must be an EmbedkitDocumentStore, got {type(document_store).__name__}")
        check_positive_int("top_k", top_k)
        self.document_store, self.filters, self.top_k = document_store, filters, top_k
        self.filter_policy = FilterPolicy.from_str(filter_policy) if isinstance(filter_policy, str) else filter_policy
        self.return_embedding = return_embedding

    def _documents(self, search, filters, top_k) -> list[Document]:
        filters = apply_filter_policy(self.filter_policy, self.filters, filters)
        k = self.top_k if top_k is None else top_k
        check_positive_int("top_k", k)
        return [to_document(h) for h in self.document_store.search(search, k, filters)]

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            document_store=self.document_store.to_dict(),
            filters=self.filters,
            top_k=self.top_k,
            filter_policy=self.filter_policy.value,
            return_embedding=self.return_embedding,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        params = data["init_parameters"]
        params["document_store"] = EmbedkitDocumentStore.from_dict(params["document_store"])
        return default_from_dict(cls, data)


@component
class EmbedkitEmbeddingRetriever(_Retriever):
    """The ``top_k`` documents nearest to a query embedding (cosine), best first, each with its ``score``."""

    @component.output_types(documents=list[Document])
    def run(self, query_embedding: list[float], filters: dict[str, Any] | None = None, top_k: int | None = None):
        index = self.document_store.index
        vector = np.asarray(query_embedding, dtype=np.float32)

        def search(depth, flt):
            return index.search_by_vector(vector, k=depth, filter=flt, include_vectors=self.return_embedding)

        return {"documents": self._documents(search, filters, top_k)}


@component
class EmbedkitSparseEmbeddingRetriever(_Retriever):
    """The ``top_k`` documents with the largest dot product with a query's sparse embedding, best first, from
    a store whose index keeps sparse vectors (made with ``sparse_encoder=``)."""

    @component.output_types(documents=list[Document])
    def run(
        self, query_sparse_embedding: SparseEmbedding, filters: dict[str, Any] | None = None, top_k: int | None = None
    ):
        if not isinstance(query_sparse_embedding, SparseEmbedding):
            raise TypeError(f"query_sparse_embedding must be a SparseEmbedding, got {type(query_sparse_embedding)}")
        index, vector = (
            self.document_store.index,
            dict(zip(query_sparse_embedding.indices, query_sparse_embedding.values)),
        )

        def search(depth, flt):
            return index.search_by_sparse_vector(vector, k=depth, filter=flt, include_vectors=self.return_embedding)

        return {"documents": self._documents(search, filters, top_k)}


@component
class EmbedkitKeywordRetriever(_Retriever):
    """The ``top_k`` documents for a query by the store's full-text index (BM25 ranking), best first."""

    @component.output_types(documents=list[Document])
    def run(self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None):
        return {"documents": self._documents(self._mode(query, "keyword"), filters, top_k)}

    def _mode(self, query: str, mode: str):
        index = self.document_store.index
        return lambda depth, flt: index.search(
            query, k=depth, filter=flt, mode=mode, include_vectors=self.return_embedding
        )


@component
class EmbedkitHybridRetriever(EmbedkitKeywordRetriever):
    """Every leg of the store's index (vector, keyword and, where it keeps them, sparse vectors) fused by
    reciprocal rank fusion (the index's own models embed the query)."""

    @component.output_types(documents=list[Document])
    def run(self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None):
        return {"documents": self._documents(self._mode(query, "hybrid"), filters, top_k)}


@component
class EmbedkitRanker:
    """Reorders documents by an embedkit CrossEncoder's score for (query, document) and keeps ``top_k``,
    each with its ``score``; ``score_threshold`` drops documents scoring below it."""

    def __init__(
        self,
        model: str = "cross-encoder/ms-marco-MiniLM-L6-v2",
        top_k: int = 10,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        score_threshold: float | None = None,
        batch_size: int = 32,
        device: str | None = None,
    ):
        check_positive_int("top_k", top_k)
        check_positive_int("batch_size", batch_size)
        self.model, self.top_k, self.score_threshold = model, top_k, score_threshold
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.embedding_separator, self.batch_size, self.device = embedding_separator, batch_size, device
        self._model = None

    def warm_up(self) -> None:
        if self._model is None:
            from embedkit import CrossEncoder

            self._model = CrossEncoder(self.model, device=self.device)

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            model=self.model,
            top_k=self.top_k,
            meta_fields_to_embed=self.meta_fields_to_embed,
            embedding_separator=self.embedding_separator,
            score_threshold=self.score_threshold,
            batch_size=self.batch_size,
            device=self.device,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(self, query: str, documents: list[Document], top_k: int | None = None):
        k = self.top_k if top_k is None else top_k
        check_positive_int("top_k", k)
        if not documents:
            return {"documents": []}
        self.warm_up()
        texts = [text_of(d, self.meta_fields_to_embed, self.embedding_separator) for d in documents]
        scores = self._model.predict([(query, t) for t in texts], batch_size=self.batch_size)
        order = sorted(range(len(documents)), key=lambda i: -float(scores[i]))
        ranked = [dataclasses.replace(documents[i], score=float(scores[i])) for i in order]
        if self.score_threshold is not None:
            ranked = [d for d in ranked if d.score >= self.score_threshold]
        return {"documents": ranked[:k]}
