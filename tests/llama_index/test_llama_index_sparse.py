"""Learned sparse vectors in LlamaIndex: ``EmbedkitSparseEmbedding`` equals sentence-transformers' own
SparseEncoder on SPLADE-tiny, and a real ``VectorStoreIndex`` over an index with a sparse leg retrieves in
``sparse`` mode exactly what the index's own sparse search returns, and fuses it in ``hybrid`` mode."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.vector_stores import MetadataFilter, MetadataFilters, VectorStoreQuery  # noqa: E402
from llama_index.core.vector_stores.types import VectorStoreQueryMode  # noqa: E402
from store_workers import HashSparse  # noqa: E402
from test_llama_index_store import TEXTS  # noqa: E402

from integrations.llama_index import EmbedkitSparseEmbedding, EmbedkitVectorStore  # noqa: E402

STORES = ["faiss-flat-float32", "sqlite", "postgres"]


@pytest.mark.slow
def test_sparse_embeddings_equal_the_sentence_transformers_oracle(splade_tiny):
    st = pytest.importorskip("sentence_transformers")
    from embedkit import SparseEncoder

    oracle = st.SparseEncoder(splade_tiny, device="cpu")
    texts = [t for t, _ in TEXTS]
    for embedding in (
        EmbedkitSparseEmbedding(model_name=splade_tiny),
        EmbedkitSparseEmbedding(SparseEncoder(splade_tiny)),
    ):
        got = embedding.get_text_embedding_batch(texts)
        want = oracle.encode_document(texts).to_dense().numpy()
        for row, truth in zip(got, want):
            assert row == pytest.approx({int(d): float(truth[d]) for d in np.flatnonzero(truth)}, abs=1e-5)
        query = embedding.get_query_embedding("which tea is steamed?")
        truth = oracle.encode_query(["which tea is steamed?"]).to_dense().numpy()[0]
        assert query == pytest.approx({int(d): float(truth[d]) for d in np.flatnonzero(truth)}, abs=1e-5)
    assert EmbedkitSparseEmbedding.class_name() == "EmbedkitSparseEmbedding"
    with pytest.raises(TypeError, match="model must be an embedkit SparseEncoder"):
        EmbedkitSparseEmbedding(model="a name")


def test_sparse_and_hybrid_retrieval_through_a_vector_store_index(make, tiny_model):
    index = make(tiny_model, sparse_encoder=HashSparse())
    store = EmbedkitVectorStore(index)
    documents = [Document(text=t, metadata=m, doc_id=f"doc{i}") for i, (t, m) in enumerate(TEXTS * 4)]
    built = VectorStoreIndex.from_documents(
        documents, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=store.embedding()
    )
    tea = MetadataFilters(filters=[MetadataFilter(key="topic", value="tea")])
    for query, filters, flt in (("black tea leaves", None, None), ("black tea leaves", tea, {"topic": "tea"})):
        retriever = built.as_retriever(vector_store_query_mode="sparse", similarity_top_k=3, filters=filters)
        got = retriever.retrieve(query)
        want = index.search(query, k=3, mode="sparse", filter=flt)
        assert [r.node.node_id for r in got] == [h.id for h in want] and len(want) == 3
        assert [r.score for r in got] == pytest.approx([h.score for h in want])
    hybrid = store.query(VectorStoreQuery(query_str="espresso", similarity_top_k=4, mode=VectorStoreQueryMode.HYBRID))
    assert hybrid.ids == [h.id for h in index.search("espresso", k=4, mode="hybrid")]
    weighed = VectorStoreQuery(query_str="espresso", similarity_top_k=4, mode=VectorStoreQueryMode.HYBRID, alpha=0.3)
    want = index.search("espresso", k=4, mode="hybrid", weights={"vector": 0.3, "sparse": 0.7})
    assert store.query(weighed).ids == [h.id for h in want]
    assert {leg for h in want for leg in h.ranks} <= {"vector", "sparse"}
