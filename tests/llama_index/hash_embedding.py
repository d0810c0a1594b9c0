"""A torch-free LlamaIndex embedding over the tests' HashEncoder, for spawned processes that must start fast."""

from llama_index.core.embeddings import BaseEmbedding
from store_workers import HashEncoder


class HashEmbedding(BaseEmbedding):
    def _vector(self, text: str) -> list[float]:
        return HashEncoder().encode_document([text])[0].tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)
