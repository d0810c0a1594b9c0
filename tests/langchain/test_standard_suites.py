"""LangChain's own standard test suites (langchain-tests), unmodified, over every backend."""

from __future__ import annotations

import uuid

import pytest
from langchain_tests.integration_tests import (
    EmbeddingsIntegrationTests,
    VectorStoreIntegrationTests,
)
from langchain_tests.unit_tests import EmbeddingsUnitTests

from integrations import FaissIndex, SQLIndex
from integrations.langchain import EmbedkitEmbeddings, EmbedkitVectorStore


class TinyModelParams:
    """Both embeddings suites build EmbedkitEmbeddings over the tiny fixture model with prompts."""

    @pytest.fixture(autouse=True)
    def _model_dir(self, prompt_model_dir):
        self.model_dir = prompt_model_dir

    @property
    def embeddings_class(self):
        return EmbedkitEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model": self.model_dir, "device": "cpu"}


class TestEmbedkitEmbeddingsUnit(TinyModelParams, EmbeddingsUnitTests):
    pass


class TestEmbedkitEmbeddingsIntegration(TinyModelParams, EmbeddingsIntegrationTests):
    pass


class TestFaissVectorStore(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self):
        return EmbedkitVectorStore(FaissIndex(self.get_embeddings()), self.get_embeddings())


class TestSQLiteVectorStore(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path):
        index = SQLIndex(self.get_embeddings(), f"sqlite:///{tmp_path}/lc.db")
        yield EmbedkitVectorStore(index, self.get_embeddings())
        index.close()


class TestPostgresVectorStore(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, pg_url):
        index = SQLIndex(self.get_embeddings(), pg_url[0], table=f"lc_{uuid.uuid4().hex[:12]}")
        assert index.uses_pgvector
        yield EmbedkitVectorStore(index, self.get_embeddings())
        index.close()
