"""Ports from LangChain's HuggingFaceEmbeddings and FAISS store: the same keywords, save_local/load_local."""

from __future__ import annotations

import os

import numpy as np
import pytest

from embedkit import SentenceTransformer
from integrations import FaissIndex, SQLIndex
from integrations.langchain import EmbedkitEmbeddings, EmbedkitVectorStore


def test_huggingface_embeddings_keywords(prompt_model_dir):
    """HuggingFaceEmbeddings(model_name=..., model_kwargs=..., encode_kwargs=..., query_encode_kwargs=...)."""
    emb = EmbedkitEmbeddings(
        model_name=prompt_model_dir,
        model_kwargs={"device": "cpu", "truncate_dim": 16},
        encode_kwargs={"batch_size": 2, "normalize_embeddings": True},
        query_encode_kwargs={"truncate_dim": 8, "normalize_embeddings": True},
        show_progress=False,
    )
    model = SentenceTransformer(prompt_model_dir, device="cpu")
    texts = ["first text", "a second, longer text", "third"]
    documents = np.array(emb.embed_documents(texts))
    np.testing.assert_allclose(
        documents, model.encode(texts, prompt="passage: ", truncate_dim=16, normalize_embeddings=True), atol=1e-6
    )
    query = np.array(emb.embed_query("a question"))
    np.testing.assert_allclose(
        query, model.encode("a question", prompt="query: ", truncate_dim=8, normalize_embeddings=True), atol=1e-6
    )
    assert emb.model_name == prompt_model_dir and emb.model.device.type == "cpu"


def test_query_kwargs_default_to_encode_kwargs(tiny_model):
    emb = EmbedkitEmbeddings(tiny_model, encode_kwargs={"truncate_dim": 4})
    assert len(emb.embed_query("q")) == 4 and len(emb.embed_documents(["d"])[0]) == 4


@pytest.mark.slow
def test_multi_process_matches_one_process(tiny_model):
    texts = [f"text number {i}" for i in range(20)]
    one = EmbedkitEmbeddings(tiny_model).embed_documents(texts)
    many = EmbedkitEmbeddings(tiny_model, multi_process=True).embed_documents(texts)
    np.testing.assert_allclose(many, one, atol=1e-5)


@pytest.mark.parametrize("kind, precision", [("flat", "float32"), ("hnsw", "int8")])
def test_save_local_and_load_local(tmp_path, tiny_model, kind, precision):
    embeddings = EmbedkitEmbeddings(tiny_model)
    texts = [f"document about subject {i}" for i in range(30)]
    store = EmbedkitVectorStore.from_texts(
        texts,
        embeddings,
        [{"n": i} for i in range(30)],
        ids=[f"d{i}" for i in range(30)],
        kind=kind,
        precision=precision,
    )
    before = store.similarity_search_with_score("subject 7", k=5, filter={"n": {"$lt": 20}})
    store.save_local(str(tmp_path / "saved"))
    files = {f for _, _, names in os.walk(tmp_path / "saved") for f in names}
    assert "docs.sqlite" in files and not any(f.endswith((".pkl", ".pickle")) for f in files)

    loaded = EmbedkitVectorStore.load_local(str(tmp_path / "saved"), embeddings, allow_dangerous_deserialization=False)
    assert isinstance(loaded.index, FaissIndex) and (loaded.index.kind, loaded.index.precision) == (kind, precision)
    after = loaded.similarity_search_with_score("subject 7", k=5, filter={"n": {"$lt": 20}})
    assert [(d.id, d.page_content, d.metadata) for d, _ in after] == [
        (d.id, d.page_content, d.metadata) for d, _ in before
    ]
    np.testing.assert_allclose([s for _, s in after], [s for _, s in before], atol=1e-5)
    loaded.add_texts(["a later text"], ids=["later"])  # the loaded store keeps every write
    assert EmbedkitVectorStore.load_local(str(tmp_path / "saved"), embeddings).get_by_ids(["later"])[0].id == "later"


def test_load_local_of_nothing_and_save_local_of_a_sql_store(tmp_path, tiny_model):
    embeddings = EmbedkitEmbeddings(tiny_model)
    with pytest.raises(FileNotFoundError, match="no FAISS index at .*nothing.*index"):
        EmbedkitVectorStore.load_local(str(tmp_path / "nothing"), embeddings)
    store = EmbedkitVectorStore(SQLIndex(tiny_model, f"sqlite:///{tmp_path}/d.db"))
    with pytest.raises(TypeError, match="save_local\\(\\) saves FAISS-backed stores; this one is a SQLIndex"):
        store.save_local(str(tmp_path / "x"))


@pytest.mark.parametrize("backend", ["faiss", "sql"])
def test_hybrid_and_keyword_search_through_langchain(tmp_path, tiny_model, backend):
    texts = ["the quokka is a small marsupial", "stock markets fell", "a recipe for soup", "rates rose again"]
    location = {"path": str(tmp_path / "f")} if backend == "faiss" else {"url": f"sqlite:///{tmp_path}/d.db"}
    store = EmbedkitVectorStore.from_texts(
        texts, EmbedkitEmbeddings(tiny_model), [{"n": i} for i in range(4)], backend=backend, **location
    )
    assert [d.page_content for d in store.similarity_search("quokka", k=4, mode="keyword")] == [texts[0]]
    retriever = store.as_retriever(search_kwargs={"k": 2, "mode": "hybrid", "rrf_k": 10, "filter": {"n": {"$lt": 3}}})
    docs = retriever.invoke("quokka marsupial")
    assert len(docs) == 2 and docs[0].page_content == texts[0] and all(d.metadata["n"] < 3 for d in docs)
    scored = store.similarity_search_with_score("quokka", k=1, mode="hybrid", rrf_k=10)
    assert scored[0][0].page_content == texts[0] and scored[0][1] > 1 / 11  # first by keyword, and found by vector
    assert scored[0][1] == pytest.approx(store.index.search("quokka", k=1, mode="hybrid", rrf_k=10)[0].score)


def test_sparse_search_through_langchain(tmp_path, tiny_model):
    """A LangChain store over an index with a sparse leg: ``mode="sparse"`` and hybrid ``weights`` reach it."""
    from store_workers import HashSparse

    texts = ["the quokka is a small marsupial", "stock markets fell", "a quokka recipe", "rates rose again"]
    index = SQLIndex(tiny_model, f"sqlite:///{tmp_path}/d.db", sparse_encoder=HashSparse())
    store = EmbedkitVectorStore(index)
    store.add_texts(texts, [{"n": i} for i in range(4)], ids=[f"t{i}" for i in range(4)])
    got = store.similarity_search_with_score("quokka", k=4, mode="sparse")
    want = index.search("quokka", k=4, mode="sparse")
    assert [(d.id, s) for d, s in got] == [(h.id, h.score) for h in want] and len(want) == 2
    retriever = store.as_retriever(search_kwargs={"k": 2, "mode": "hybrid", "weights": {"sparse": 1.0}})
    assert [d.id for d in retriever.invoke("quokka")] == [h.id for h in want]
