"""Haystack 2.x over embedkit: ``EmbedkitDocumentStore`` (the DocumentStore protocol over any
``integrations.Index``) and the components ``EmbedkitTextEmbedder``, ``EmbedkitDocumentEmbedder``,
``EmbedkitEmbeddingRetriever``, ``EmbedkitKeywordRetriever``, ``EmbedkitHybridRetriever`` and
``EmbedkitRanker``, and for learned sparse vectors ``EmbedkitSparseTextEmbedder``,
``EmbedkitSparseDocumentEmbedder`` and ``EmbedkitSparseEmbeddingRetriever``. Needs the ``haystack`` extra
(haystack-ai)."""

from integrations.haystack.components import (
    EmbedkitDocumentEmbedder,
    EmbedkitEmbeddingRetriever,
    EmbedkitHybridRetriever,
    EmbedkitKeywordRetriever,
    EmbedkitRanker,
    EmbedkitSparseEmbeddingRetriever,
    EmbedkitTextEmbedder,
)
from integrations.haystack.document_store import EmbedkitDocumentStore
from integrations.haystack.sparse import EmbedkitSparseDocumentEmbedder, EmbedkitSparseTextEmbedder

__all__ = [
    "EmbedkitDocumentEmbedder",
    "EmbedkitDocumentStore",
    "EmbedkitEmbeddingRetriever",
    "EmbedkitHybridRetriever",
    "EmbedkitKeywordRetriever",
    "EmbedkitRanker",
    "EmbedkitSparseDocumentEmbedder",
    "EmbedkitSparseEmbeddingRetriever",
    "EmbedkitSparseTextEmbedder",
    "EmbedkitTextEmbedder",
]
