"""Haystack 2.x over embedkit: ``EmbedkitDocumentStore`` (the DocumentStore protocol over any
``integrations.Index``) and the components ``EmbedkitTextEmbedder``, ``EmbedkitDocumentEmbedder``,
``EmbedkitEmbeddingRetriever``, ``EmbedkitKeywordRetriever``, ``EmbedkitHybridRetriever`` and
``EmbedkitRanker``. Needs the ``haystack`` extra (haystack-ai)."""

from integrations.haystack.components import (
    EmbedkitDocumentEmbedder,
    EmbedkitEmbeddingRetriever,
    EmbedkitHybridRetriever,
    EmbedkitKeywordRetriever,
    EmbedkitRanker,
    EmbedkitTextEmbedder,
)
from integrations.haystack.document_store import EmbedkitDocumentStore

__all__ = [
    "EmbedkitDocumentEmbedder",
    "EmbedkitDocumentStore",
    "EmbedkitEmbeddingRetriever",
    "EmbedkitHybridRetriever",
    "EmbedkitKeywordRetriever",
    "EmbedkitRanker",
    "EmbedkitTextEmbedder",
]
