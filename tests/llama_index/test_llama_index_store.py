"""The LlamaIndex adapters in a real VectorStoreIndex on every backend, against LlamaIndex's own
SimpleVectorStore and the sentence-transformers oracle."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from hash_embedding import HashEmbedding  # noqa: E402
from llama_index.core import Document, StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode  # noqa: E402
from llama_index.core.vector_stores import (  # noqa: E402
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    SimpleVectorStore,
    VectorStoreQuery,
)
from llama_index.core.vector_stores.types import VectorStoreQueryMode  # noqa: E402
from store_workers import MAIN, HashEncoder  # noqa: E402

from integrations.llama_index import EmbedkitEmbedding, EmbedkitVectorStore  # noqa: E402

STORES = MAIN
EXACT = ["faiss-flat-float32", "sqlite", "postgres"]
TEXTS = [
    ("Green tea is steamed soon after picking.", {"topic": "tea", "year": 2020}),
    ("Black tea leaves are fully oxidised.", {"topic": "tea", "year": 2022}),
    ("Espresso is brewed under pressure.", {"topic": "coffee", "year": 2021}),
    ("The Danube flows into the Black Sea.", {"topic": "rivers", "year": 2019}),
    ("Coffee beans are the seeds of a cherry.", {"topic": "coffee", "year": 2023}),
]


def documents() -> list[Document]:
    return [Document(text=t, metadata=m, doc_id=f"doc{i}") for i, (t, m) in enumerate(TEXTS)]


def test_embeddings_equal_the_sentence_transformers_oracle(prompt_model_dir, tiny_model):
    from sentence_transformers import SentenceTransformer as Oracle

    oracle = Oracle(prompt_model_dir, device="cpu")
    by_name = EmbedkitEmbedding(model_name=prompt_model_dir, model_kwargs={"device": "cpu"}, embed_batch_size=2)
    loaded = EmbedkitEmbedding(tiny_model)
    texts = [t for t, _ in TEXTS]
    # the design's rule: the passage prompt on documents, the query prompt on queries
    want_docs = oracle.encode(texts, prompt_name="passage")
    want_query = oracle.encode("which tea is steamed?", prompt_name="query")
    for embedding in (by_name, loaded):
        np.testing.assert_allclose(embedding.get_text_embedding_batch(texts), want_docs, atol=1e-6)
        np.testing.assert_allclose(embedding.get_query_embedding("which tea is steamed?"), want_query, atol=1e-6)
        np.testing.assert_allclose(asyncio.run(embedding.aget_text_embedding(texts[0])), want_docs[0], atol=1e-6)
        np.testing.assert_allclose(
            asyncio.run(embedding.aget_query_embedding("which tea is steamed?")), want_query, atol=1e-6
        )
    assert by_name.model_name == prompt_model_dir
    with pytest.raises(TypeError, match="embedkit SentenceTransformer"):
        EmbedkitEmbedding(object())


def test_a_vector_store_index_end_to_end(make, tiny_model, store_name):
    index = make(tiny_model)
    store = EmbedkitVectorStore(index)
    built = VectorStoreIndex.from_documents(
        documents(), storage_context=StorageContext.from_defaults(vector_store=store), embed_model=store.embedding()
    )
    assert len(index) == len(TEXTS)
    tea = MetadataFilters(filters=[MetadataFilter(key="topic", value="tea")])
    retrieved = built.as_retriever(similarity_top_k=2, filters=tea).retrieve("steamed leaves")
    want = index.search("steamed leaves", k=2, filter={"topic": "tea"})
    assert [r.node.node_id for r in retrieved] == [h.id for h in want]
    assert [r.node.ref_doc_id for r in retrieved] == sorted(
        {r.node.ref_doc_id for r in retrieved}, key=[r.node.ref_doc_id for r in retrieved].index
    )
    assert all(r.node.metadata["topic"] == "tea" for r in retrieved)
    np.testing.assert_allclose([r.score for r in retrieved], [h.score for h in want], atol=1e-6)

    answer = built.as_query_engine(llm=MockLLM(), similarity_top_k=1).query("steamed leaves")
    assert [n.node.node_id for n in answer.source_nodes] == [want[0].id]
    assert want[0].text in str(answer)  # MockLLM echoes the prompt, which holds the retrieved text

    built.insert(Document(text="Oolong tea is partly oxidised.", metadata={"topic": "tea", "year": 2024}, doc_id="new"))
    assert len(index) == len(TEXTS) + 1
    built.delete_ref_doc("doc0")
    assert len(index) == len(TEXTS)
    left = built.as_retriever(similarity_top_k=10).retrieve("tea")
    assert "doc0" not in {r.node.ref_doc_id for r in left} and "new" in {r.node.ref_doc_id for r in left}


def test_nodes_come_back_whole(make):
    store = EmbedkitVectorStore(make())
    node = TextNode(
        id_="n1",
        text="Some text",
        metadata={"topic": "tea", "year": 2020, "tags": ["a", "b"]},
        excluded_llm_metadata_keys=["year"],
        relationships={
            NodeRelationship.SOURCE: RelatedNodeInfo(node_id="doc-1", metadata={"file": "a.txt"}),
            NodeRelationship.NEXT: RelatedNodeInfo(node_id="n2"),
        },
        embedding=HashEncoder().encode_document(["x"])[0].tolist(),
    )
    store.add([node])
    (back,) = store.get_nodes(["n1"])
    assert back.model_dump(exclude={"embedding"}) == node.model_dump(exclude={"embedding"})
    assert back.ref_doc_id == "doc-1"
    store.delete("doc-1")
    assert store.get_nodes(["n1"]) == []


def _nodes(n=40, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        TextNode(
            id_=f"n{i:02d}",
            text=f"text {i} tea" if i % 3 else f"text {i}",
            metadata={"i": i, "even": i % 2 == 0},
            embedding=v.tolist(),
        )
        for i, v in enumerate(vectors)
    ]


@pytest.mark.stores(EXACT)
@pytest.mark.parametrize("mode", [VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR])
def test_default_and_mmr_agree_with_llama_index_s_simple_vector_store(make, mode):
    nodes = _nodes()
    ours, theirs = EmbedkitVectorStore(make()), SimpleVectorStore()
    ours.add(nodes)
    theirs.add(nodes)
    query = np.random.default_rng(9).normal(size=32)
    query = (query / np.linalg.norm(query)).tolist()
    for filters in (None, MetadataFilters(filters=[MetadataFilter(key="i", value=10, operator=FilterOperator.GT)])):
        q = VectorStoreQuery(query_embedding=query, similarity_top_k=5, mode=mode, filters=filters, mmr_threshold=0.5)
        got, want = ours.query(q, mmr_prefetch_k=40), theirs.query(q, mmr_threshold=0.5)
        assert got.ids == want.ids
        np.testing.assert_allclose(got.similarities, want.similarities, atol=1e-5)


@pytest.mark.parametrize(
    ("mode", "name"), [(VectorStoreQueryMode.TEXT_SEARCH, "keyword"), (VectorStoreQueryMode.HYBRID, "hybrid")]
)
def test_text_search_and_hybrid_are_the_index_s_own(make, mode, name):
    index = make()
    store = EmbedkitVectorStore(index)
    store.add(_nodes())
    even = MetadataFilters(filters=[MetadataFilter(key="even", value=1)])  # True == 1, as in Python
    result = store.query(VectorStoreQuery(query_str="tea", similarity_top_k=4, mode=mode, filters=even))
    want = index.search("tea", k=4, mode=name, filter={"even": True})
    assert result.ids == [h.id for h in want] and len(want) == 4
    if mode == VectorStoreQueryMode.HYBRID:  # hybrid_top_k: the legs are similarity_top_k and sparse_top_k deep
        q = VectorStoreQuery(query_str="tea", similarity_top_k=3, sparse_top_k=5, hybrid_top_k=2, mode=mode)
        assert store.query(q).ids == [h.id for h in index.search("tea", k=2, mode="hybrid", candidates=5)]
    if mode == VectorStoreQueryMode.HYBRID:  # alpha: the vector leg's weight, the keyword leg's 1 - alpha
        for alpha, weights in ((0.25, {"vector": 0.25, "keyword": 0.75}), (1.0, {"vector": 1.0})):
            q = VectorStoreQuery(query_str="tea", similarity_top_k=4, mode=mode, alpha=alpha)
            assert store.query(q).ids == [h.id for h in index.search("tea", k=4, mode="hybrid", weights=weights)]
    for alpha, bad in ((0.5, VectorStoreQueryMode.TEXT_SEARCH), (1.5, VectorStoreQueryMode.HYBRID)):
        with pytest.raises(ValueError, match="alpha weighs the legs of a HYBRID query, from 0 to 1"):
            store.query(VectorStoreQuery(query_str="tea", mode=bad, alpha=alpha))
    with pytest.raises(ValueError, match="not supported"):
        store.query(VectorStoreQuery(query_str="tea", mode=VectorStoreQueryMode.SVM))
    with pytest.raises(ValueError, match="needs query_str"):
        store.query(VectorStoreQuery(mode=mode))
    with pytest.raises(ValueError, match="needs query_embedding"):
        store.query(VectorStoreQuery(query_str="tea"))


def test_doc_ids_node_ids_deletes_and_clear(make):
    store = EmbedkitVectorStore(make())
    nodes = _nodes(12)
    for i, n in enumerate(nodes):
        n.relationships = {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc{i % 3}")}
    store.add(nodes)
    query = nodes[0].embedding
    only = store.query(VectorStoreQuery(query_embedding=query, similarity_top_k=20, doc_ids=["doc1"]))
    assert sorted(only.ids) == [n.node_id for n in nodes if n.ref_doc_id == "doc1"]
    picked = store.query(VectorStoreQuery(query_embedding=query, similarity_top_k=2, node_ids=["n05", "n07", "n09"]))
    assert set(picked.ids) <= {"n05", "n07", "n09"} and len(picked.ids) == 2
    store.delete_nodes(["n00", "n01", "n02"], filters=MetadataFilters(filters=[MetadataFilter(key="even", value=1)]))
    assert [n.node_id for n in store.get_nodes(["n00", "n01", "n02"])] == ["n01"]
    text_match = MetadataFilters(filters=[MetadataFilter(key="i", value=3, operator=FilterOperator.GTE)])
    store.delete_nodes(filters=text_match)
    assert sorted(n.node_id for n in store.get_nodes()) == ["n01"]
    with pytest.raises(ValueError, match="clear"):
        store.delete_nodes()
    store.clear()
    assert store.get_nodes() == []


def test_the_async_methods(make):
    store = EmbedkitVectorStore(make())
    nodes = _nodes(6)

    async def run():
        assert await store.async_add(nodes) == [n.node_id for n in nodes]
        result = await store.aquery(VectorStoreQuery(query_embedding=nodes[2].embedding, similarity_top_k=1))
        assert result.ids == ["n02"]
        assert [n.node_id for n in await store.aget_nodes(["n03"])] == ["n03"]
        await store.adelete_nodes(["n03"])
        await store.adelete("none")
        assert len(await store.aget_nodes()) == 5
        await store.aclear()
        assert await store.aget_nodes() == []

    asyncio.run(run())


def test_bad_input(make):
    with pytest.raises(TypeError, match="integrations.Index"):
        EmbedkitVectorStore(object())
    store = EmbedkitVectorStore(make())
    assert store.add([]) == []
    with pytest.raises(ValueError, match=r"shape \[n, 32\]"):
        store.add([TextNode(id_="x", text="x", embedding=[1.0, 2.0])])


@pytest.mark.slow
def test_reopened_in_a_new_process(backend, tmp_path):
    """Nodes written here are found by a VectorStoreIndex built over the same store in another process."""
    index = backend.open()
    store = EmbedkitVectorStore(index)
    VectorStoreIndex.from_documents(
        documents(), storage_context=StorageContext.from_defaults(vector_store=store), embed_model=HashEmbedding()
    )
    want = [h.id for h in index.search("Black tea", k=3)]
    index.close()
    script = textwrap.dedent(f"""
        import json, sys
        sys.path[:0] = {[str(p) for p in (tmp_path.parent,)]!r}
        from hash_embedding import HashEmbedding
        from llama_index.core import VectorStoreIndex
        from store_workers import HashEncoder
        from integrations import open_index
        from integrations.llama_index import EmbedkitVectorStore
        index = open_index({backend.target!r}, HashEncoder(), **{backend.options!r})
        built = VectorStoreIndex.from_vector_store(EmbedkitVectorStore(index), embed_model=HashEmbedding())
        print(json.dumps([r.node.node_id for r in built.as_retriever(similarity_top_k=3).retrieve("Black tea")]))
    """)
    here = pathlib.Path(__file__).parent
    env_path = [str(here), str(here.parent)]
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ":".join(env_path)},
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == want
