"""Haystack's own DocumentStore suites (``haystack.testing.document_store``) on FAISS (flat), SQLite and
PostgreSQL. Two of Haystack's tests are overridden as its docstrings ask: ``test_write_documents`` (the
default policy is the store's to choose: here FAIL, as in Haystack's InMemoryDocumentStore; and its async
twin) and
``assert_documents_are_equal`` (this store returns documents in id order, and embeddings L2-normalized
in float32, as the index stores them)."""

from __future__ import annotations

import numpy as np
import pytest
from haystack.dataclasses import Document
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.testing.document_store import (
    CountDocumentsByFilterTest,
    CountUniqueMetadataByFilterTest,
    DocumentStoreBaseExtendedTests,
    GetMetadataFieldMinMaxTest,
    GetMetadataFieldsInfoTest,
    GetMetadataFieldUniqueValuesTest,
)
from haystack.testing.document_store_async import (
    CountDocumentsAsyncTest,
    CountDocumentsByFilterAsyncTest,
    CountUniqueMetadataByFilterAsyncTest,
    DeleteAllAsyncTest,
    DeleteByFilterAsyncTest,
    DeleteDocumentsAsyncTest,
    FilterDocumentsAsyncTest,
    GetMetadataFieldMinMaxAsyncTest,
    GetMetadataFieldsInfoAsyncTest,
    GetMetadataFieldUniqueValuesAsyncTest,
    UpdateByFilterAsyncTest,
    WriteDocumentsAsyncTest,
)


def normalized(embedding):
    if embedding is None:
        return None
    v = np.asarray(embedding, dtype=np.float32)
    return v / np.linalg.norm(v)


class TestHaystackSuites(
    DocumentStoreBaseExtendedTests,
    CountDocumentsByFilterTest,
    CountUniqueMetadataByFilterTest,
    GetMetadataFieldsInfoTest,
    GetMetadataFieldMinMaxTest,
    GetMetadataFieldUniqueValuesTest,
    CountDocumentsAsyncTest,
    CountDocumentsByFilterAsyncTest,
    CountUniqueMetadataByFilterAsyncTest,
    DeleteAllAsyncTest,
    DeleteByFilterAsyncTest,
    DeleteDocumentsAsyncTest,
    FilterDocumentsAsyncTest,
    GetMetadataFieldMinMaxAsyncTest,
    GetMetadataFieldsInfoAsyncTest,
    GetMetadataFieldUniqueValuesAsyncTest,
    UpdateByFilterAsyncTest,
    WriteDocumentsAsyncTest,
):
    @pytest.fixture
    def document_store(self, haystack_store):
        return haystack_store

    @staticmethod
    def assert_documents_are_equal(received: list[Document], expected: list[Document]):
        received, expected = sorted(received, key=lambda d: d.id), sorted(expected, key=lambda d: d.id)
        assert [d.id for d in received] == [d.id for d in expected]
        for got, want in zip(received, expected):
            got_dict, want_dict = got.to_dict(flatten=False), want.to_dict(flatten=False)
            got_dict.pop("embedding"), want_dict.pop("embedding")
            assert got_dict == want_dict
            if want.embedding is None:
                assert got.embedding is None
            else:
                np.testing.assert_allclose(got.embedding, normalized(want.embedding), atol=1e-6)

    def test_write_documents(self, document_store):
        doc = Document(content="test doc")
        assert document_store.write_documents([doc]) == 1
        with pytest.raises(DuplicateDocumentError):
            document_store.write_documents([doc])
        self.assert_documents_are_equal(document_store.filter_documents(), [doc])

    @pytest.mark.asyncio
    async def test_write_documents_async(self, document_store):
        doc = Document(content="test doc")
        assert await document_store.write_documents_async([doc]) == 1
        with pytest.raises(DuplicateDocumentError):
            await document_store.write_documents_async([doc])
        self.assert_documents_are_equal(await document_store.filter_documents_async(), [doc])
