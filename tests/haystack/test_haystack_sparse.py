"""Learned sparse vectors in Haystack: the sparse embedders equal sentence-transformers' own SparseEncoder
on SPLADE-tiny, a DocumentWriter stores their ``sparse_embedding`` as the index's sparse vectors, and
``EmbedkitSparseEmbeddingRetriever`` in a real Pipeline returns the exact top k of the oracle's dot
products, filtered; the hybrid retriever fuses the sparse leg too."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from haystack import Document, Pipeline
from haystack.components.writers import DocumentWriter
from haystack.dataclasses import SparseEmbedding
from store_workers import Backend

from integrations.haystack import (
    EmbedkitDocumentStore,
    EmbedkitHybridRetriever,
    EmbedkitSparseDocumentEmbedder,
    EmbedkitSparseEmbeddingRetriever,
    EmbedkitSparseTextEmbedder,
)

SCIFACT = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "scifact"


def scifact(n_docs: int, n_queries: int):
    rows = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").open()][:n_docs]
    documents = [
        Document(id=r["_id"], content=(r.get("title", "") + " " + r["text"]).strip(), meta={"even": i % 2 == 0})
        for i, r in enumerate(rows)
    ]
    queries = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").open()][:n_queries]
    return documents, queries


def as_dense(embedding: SparseEmbedding, width: int) -> np.ndarray:
    row = np.zeros(width, np.float64)
    row[embedding.indices] = embedding.values
    return row


@pytest.fixture(scope="module")
def case(splade_tiny):
    """SciFact documents embedded by EmbedkitSparseDocumentEmbedder (checked against the oracle here, once),
    queries, and the oracle's own document and query vectors."""
    st = pytest.importorskip("sentence_transformers")
    documents, queries = scifact(80, 6)
    oracle = st.SparseEncoder(splade_tiny, device="cpu")
    doc_truth = oracle.encode_document([d.content for d in documents]).to_dense().numpy()
    query_truth = oracle.encode_query(queries).to_dense().numpy()
    embedder = EmbedkitSparseDocumentEmbedder(model=splade_tiny, device="cpu", batch_size=16)
    embedder = EmbedkitSparseDocumentEmbedder.from_dict(embedder.to_dict())
    embedded = embedder.run(documents)["documents"]
    width = doc_truth.shape[1]
    np.testing.assert_allclose([as_dense(d.sparse_embedding, width) for d in embedded], doc_truth, atol=1e-5)
    assert [d.content for d in embedded] == [d.content for d in documents] and documents[0].sparse_embedding is None
    text = EmbedkitSparseTextEmbedder(model=splade_tiny, device="cpu")
    got = [as_dense(text.run(q)["sparse_embedding"], width) for q in queries]
    np.testing.assert_allclose(got, query_truth, atol=1e-5)
    return embedded, queries, doc_truth, query_truth


@pytest.mark.slow
@pytest.mark.parametrize("store_name", ["faiss-flat-float32", "sqlite", "postgres"])
def test_sparse_pipelines_rank_as_sentence_transformers_does(store_name, tmp_path, request, splade_tiny, case):
    from embedkit import SparseEncoder

    embedded, queries, doc_truth, query_truth = case
    documents = embedded
    backend = Backend(store_name, tmp_path, request)
    store = EmbedkitDocumentStore(index=backend.open(sparse_encoder=SparseEncoder(splade_tiny)))
    writer = Pipeline()
    writer.add_component("writer", DocumentWriter(store))
    writer.run({"writer": {"documents": embedded}})
    # the stored sparse vectors are the documents' own, not the index's encoding of their text
    store.write_documents([Document(id="hand", content="tea", sparse_embedding=SparseEmbedding([7, 9], [2.0, 3.0]))])
    assert store.index.get(["hand"], include_vectors=True)[0].sparse_vector == {7: 2.0, 9: 3.0}
    store.delete_documents(["hand"])

    search = Pipeline()
    search.add_component("embedder", EmbedkitSparseTextEmbedder(model=splade_tiny, device="cpu"))
    search.add_component("retriever", EmbedkitSparseEmbeddingRetriever(store, top_k=5))
    search.connect("embedder.sparse_embedding", "retriever.query_sparse_embedding")
    even = {"field": "meta.even", "operator": "==", "value": True}
    ids = [d.id for d in documents]
    for query, truth in zip(queries, query_truth):
        scores = doc_truth @ truth
        for filters, keep in ((None, np.ones(len(ids), bool)), (even, np.arange(len(ids)) % 2 == 0)):
            found = search.run({"embedder": {"text": query}, "retriever": {"filters": filters}})["retriever"]
            hits = found["documents"]
            best = np.sort(scores[keep & (scores > 0)])[::-1][:5]
            assert [h.score for h in hits] == pytest.approx(best.tolist(), rel=1e-4)
            assert all(h.score == pytest.approx(scores[ids.index(h.id)], rel=1e-4) for h in hits)

    fused = EmbedkitHybridRetriever(store, top_k=5).run(queries[0])["documents"]
    assert len(fused) == 5
    store.index.close()


def test_the_sparse_retriever_needs_a_store_that_keeps_sparse_vectors(tmp_path, request):
    store = EmbedkitDocumentStore(index=Backend("sqlite", tmp_path, request).open())
    store.write_documents([Document(id="a", content="green tea", sparse_embedding=SparseEmbedding([1], [0.5]))])
    assert store.filter_documents()[0].sparse_embedding == SparseEmbedding([1], [0.5])  # kept with the document
    retriever = EmbedkitSparseEmbeddingRetriever(store)
    with pytest.raises(Exception, match="this index has no sparse leg: create it with sparse_encoder="):
        retriever.run(SparseEmbedding([1], [1.0]))
    with pytest.raises(TypeError, match="query_sparse_embedding must be a SparseEmbedding"):
        retriever.run({1: 1.0})
    with pytest.raises(TypeError, match="EmbedkitSparseTextEmbedder expects a string"):
        EmbedkitSparseTextEmbedder(model="unused").run(["a list"])


@pytest.mark.slow
def test_a_sparse_store_and_its_pipeline_go_to_yaml_and_back(tmp_path, splade_tiny, prompt_model_dir):
    """``index_options={"sparse_encoder": PATH}`` makes a store that serializes with its sparse leg."""
    options = {"kind": "flat", "sparse_encoder": splade_tiny}
    store = EmbedkitDocumentStore(str(tmp_path / "kb"), prompt_model_dir, index_options=options)
    store.write_documents([Document(id=i, content=t) for i, t in (("a", "aspirin inhibits COX"), ("b", "rivers"))])
    search = Pipeline()
    search.add_component("embedder", EmbedkitSparseTextEmbedder(model=splade_tiny, device="cpu"))
    search.add_component("retriever", EmbedkitSparseEmbeddingRetriever(store, top_k=1))
    search.connect("embedder.sparse_embedding", "retriever.query_sparse_embedding")
    yaml = search.dumps()
    store.index.close()
    again = Pipeline.loads(yaml, allowed_modules=["integrations.haystack"])
    found = again.run({"embedder": {"text": "what does aspirin inhibit"}})["retriever"]["documents"]
    assert [d.id for d in found] == ["a"]
    again.get_component("retriever").document_store.index.close()
