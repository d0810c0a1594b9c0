"""The Haystack components and store in real Haystack Pipelines, serialized to YAML and back, against
the sentence-transformers oracle and the index's own searches."""

from __future__ import annotations

import numpy as np
import pytest
from hash768 import Hash768
from haystack import Document, Pipeline
from haystack.components.writers import DocumentWriter
from haystack.dataclasses import ByteStream, SparseEmbedding
from haystack.document_stores.types import DuplicatePolicy, FilterPolicy
from store_workers import Backend

from integrations.haystack import (
    EmbedkitDocumentEmbedder,
    EmbedkitDocumentStore,
    EmbedkitEmbeddingRetriever,
    EmbedkitHybridRetriever,
    EmbedkitKeywordRetriever,
    EmbedkitRanker,
    EmbedkitTextEmbedder,
)

TEXTS = [
    ("Green tea is steamed soon after picking.", {"topic": "tea", "year": 2020}),
    ("Black tea leaves are fully oxidised.", {"topic": "tea", "year": 2022}),
    ("Espresso is brewed under pressure.", {"topic": "coffee", "year": 2021}),
    ("The Danube flows into the Black Sea.", {"topic": "rivers", "year": 2019}),
    ("Coffee beans are the seeds of a cherry.", {"topic": "coffee", "year": 2023}),
]
TEA = {"field": "meta.topic", "operator": "==", "value": "tea"}


def docs() -> list[Document]:
    return [Document(content=t, meta=m) for t, m in TEXTS]


def test_embedders_equal_the_sentence_transformers_oracle(prompt_model_dir):
    from sentence_transformers import SentenceTransformer as Oracle

    oracle = Oracle(prompt_model_dir, device="cpu")
    text = EmbedkitTextEmbedder(model=prompt_model_dir, device="cpu")
    documents = EmbedkitDocumentEmbedder(model=prompt_model_dir, device="cpu", meta_fields_to_embed=["topic"])
    text.warm_up()
    got = text.run("which tea is steamed?")["embedding"]
    np.testing.assert_allclose(got, oracle.encode("which tea is steamed?", prompt_name="query"), atol=1e-6)
    embedded = documents.run(docs())["documents"]
    want = oracle.encode([f"{m['topic']}\n{t}" for t, m in TEXTS], prompt_name="passage")
    np.testing.assert_allclose([d.embedding for d in embedded], want, atol=1e-6)
    assert [d.content for d in embedded] == [t for t, _ in TEXTS]  # copies, content untouched
    for component in (text, documents):
        again = type(component).from_dict(component.to_dict())
        assert again.to_dict() == component.to_dict()
    with pytest.raises(TypeError, match="EmbedkitDocumentEmbedder"):
        text.run(["a list"])
    with pytest.raises(TypeError, match="EmbedkitTextEmbedder"):
        documents.run("a string")
    assert documents.run([])["documents"] == []


def test_the_ranker_equals_the_sentence_transformers_cross_encoder(cross_dirs):
    from sentence_transformers import CrossEncoder as Oracle

    ranker = EmbedkitRanker(model=cross_dirs[1], top_k=3, device="cpu")
    ranked = ranker.run("which tea is steamed?", docs())["documents"]
    want = Oracle(cross_dirs[1], device="cpu").rank("which tea is steamed?", [t for t, _ in TEXTS], top_k=3)
    assert [d.content for d in ranked] == [TEXTS[w["corpus_id"]][0] for w in want]
    np.testing.assert_allclose([d.score for d in ranked], [w["score"] for w in want], atol=1e-5)
    assert len(ranker.run("q", docs(), top_k=1)["documents"]) == 1
    threshold = ranked[1].score
    kept = EmbedkitRanker(model=cross_dirs[1], score_threshold=threshold).run("which tea is steamed?", docs())
    assert [d.content for d in kept["documents"]] == [d.content for d in ranked[:2]]
    assert EmbedkitRanker.from_dict(ranker.to_dict()).to_dict() == ranker.to_dict()
    with pytest.raises(ValueError, match="top_k"):
        EmbedkitRanker(model=cross_dirs[1], top_k=0)


@pytest.fixture
def filled(haystack_store):
    haystack_store.write_documents(docs())
    return haystack_store


def test_retrievers_give_the_index_s_own_results(filled):
    index = filled.index
    vector = Hash768().encode_query(["steamed tea"])[0]
    by_vector = EmbedkitEmbeddingRetriever(filled, top_k=2).run(vector.tolist(), filters=TEA)["documents"]
    want = index.search_by_vector(vector, k=2, filter={"topic": "tea"})
    assert [d.id for d in by_vector] == [h.id for h in want]
    np.testing.assert_allclose([d.score for d in by_vector], [h.score for h in want], atol=1e-6)
    for retriever, mode in ((EmbedkitKeywordRetriever, "keyword"), (EmbedkitHybridRetriever, "hybrid")):
        got = retriever(filled, top_k=3).run("Black tea")["documents"]
        assert [d.id for d in got] == [h.id for h in index.search("Black tea", k=3, mode=mode)]
        assert all(d.embedding is None for d in got)
    embedded = Document(content="tea with an embedding", embedding=Hash768().encode_document(["x"])[0].tolist())
    filled.write_documents([embedded])
    with_vectors = EmbedkitKeywordRetriever(filled, return_embedding=True).run("tea")["documents"]
    vectors = {d.id: d.embedding for d in with_vectors}
    unit = np.asarray(embedded.embedding) / np.linalg.norm(embedded.embedding)
    np.testing.assert_allclose(vectors.pop(embedded.id), unit, atol=1e-6)
    assert set(vectors.values()) == {None}  # written without one, read back without one


def test_filter_policies(filled):
    coffee = {"field": "meta.topic", "operator": "==", "value": "coffee"}
    recent = {"field": "meta.year", "operator": ">", "value": 2021}
    replace = EmbedkitKeywordRetriever(filled, filters=coffee)
    merge = EmbedkitKeywordRetriever(filled, filters=coffee, filter_policy="merge")
    topics = lambda out: {d.meta["topic"] for d in out["documents"]}  # noqa: E731
    assert topics(replace.run("tea coffee Black")) == {"coffee"}
    assert topics(replace.run("tea coffee Black", filters=TEA)) == {"tea"}
    merged = merge.run("tea coffee Black espresso beans", filters=recent)["documents"]
    assert [(d.meta["topic"], d.meta["year"]) for d in merged] == [("coffee", 2023)]
    assert merge.filter_policy == FilterPolicy.MERGE
    with pytest.raises(TypeError, match="model name or path"):
        merge.to_dict()


def test_retrievers_refuse_bad_input(filled):
    with pytest.raises(TypeError, match="EmbedkitDocumentStore"):
        EmbedkitEmbeddingRetriever(object())
    with pytest.raises(ValueError, match="top_k"):
        EmbedkitKeywordRetriever(filled, top_k=0)
    with pytest.raises(ValueError, match="top_k"):
        EmbedkitKeywordRetriever(filled).run("tea", top_k=-1)


def test_what_a_document_carries_besides_text_comes_back(haystack_store):
    blob = Document(blob=ByteStream(b"\x00\xff bytes", mime_type="application/octet-stream", meta={"a": 1}))
    sparse = Document(content="sparse", sparse_embedding=SparseEmbedding(indices=[1, 5], values=[0.5, 0.25]))
    assert haystack_store.write_documents([blob, sparse]) == 2
    back = {d.id: d for d in haystack_store.filter_documents()}
    assert back[blob.id].blob == blob.blob and back[blob.id].content is None
    assert back[sparse.id].sparse_embedding == sparse.sparse_embedding
    with pytest.raises(ValueError, match="reserved"):
        haystack_store.write_documents([Document(content="x", meta={"_haystack": 1})])
    twice = [Document(id="same", content="first"), Document(id="same", content="second")]
    assert haystack_store.write_documents(twice, policy=DuplicatePolicy.SKIP) == 1
    assert haystack_store.filter_documents({"field": "id", "operator": "==", "value": "same"})[0].content == "first"
    assert haystack_store.write_documents(twice, policy=DuplicatePolicy.OVERWRITE) == 1
    assert haystack_store.filter_documents({"field": "content", "operator": "==", "value": "second"})[0].id == "same"


@pytest.mark.slow
@pytest.mark.parametrize("store_name", ["sqlite", "faiss-flat-float32"])
def test_indexing_and_query_pipelines_through_yaml(store_name, tmp_path, request, prompt_model_dir, cross_dirs):
    backend = Backend(store_name, tmp_path, request)
    store = EmbedkitDocumentStore(backend.target, prompt_model_dir, {**backend.options, "chunk_tokens": None})
    indexing = Pipeline()
    indexing.add_component("embedder", EmbedkitDocumentEmbedder(model=prompt_model_dir, device="cpu"))
    indexing.add_component("writer", DocumentWriter(store, policy=DuplicatePolicy.OVERWRITE))
    indexing.connect("embedder.documents", "writer.documents")
    indexing = Pipeline.loads(indexing.dumps(), allowed_modules=["integrations.haystack"])
    assert indexing.run({"embedder": {"documents": docs()}})["writer"]["documents_written"] == len(TEXTS)

    query = Pipeline()
    query.add_component("text", EmbedkitTextEmbedder(model=prompt_model_dir, device="cpu"))
    query.add_component("retriever", EmbedkitEmbeddingRetriever(store, top_k=4))
    query.add_component("ranker", EmbedkitRanker(model=cross_dirs[1], top_k=2, device="cpu"))
    query.connect("text.embedding", "retriever.query_embedding")
    query.connect("retriever.documents", "ranker.documents")
    yaml = query.dumps()
    assert "EmbedkitDocumentStore" in yaml and prompt_model_dir in yaml
    loaded = Pipeline.loads(yaml, allowed_modules=["integrations.haystack"])
    inputs = {"text": {"text": "steamed tea"}, "retriever": {"filters": TEA}, "ranker": {"query": "steamed tea"}}
    got = loaded.run(inputs)["ranker"]["documents"]
    want = query.run(inputs)["ranker"]["documents"]
    assert [d.id for d in got] == [d.id for d in want] and {d.meta["topic"] for d in got} == {"tea"}
    retrieved = store.index.search("steamed tea", k=4, filter={"topic": "tea"})
    assert {d.id for d in got} <= {h.id for h in retrieved}
    reopened = EmbedkitDocumentStore.from_dict(store.to_dict())
    assert reopened.count_documents() == len(TEXTS)
