"""What LangChain's standard suites do not cover: prompts, filters through retrievers, MMR, scores, async."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

from integrations import FaissIndex, SQLIndex, open_index
from integrations.langchain import EmbedkitEmbeddings, EmbedkitVectorStore


@pytest.fixture
def embeddings(tiny_model):
    return EmbedkitEmbeddings(tiny_model)


def test_query_and_passage_prompts_differ(embeddings, tiny_model):
    query = embeddings.embed_query("the same text")
    (document,) = embeddings.embed_documents(["the same text"])
    assert type(query) is list and all(type(x) is float for x in query)
    assert type(document[0]) is float
    np.testing.assert_allclose(query, tiny_model.encode("the same text", prompt="query: "), atol=1e-6)
    np.testing.assert_allclose(document, tiny_model.encode("the same text", prompt="passage: "), atol=1e-6)
    assert not np.allclose(query, document, atol=1e-3)


def test_options_reach_encode(tiny_model):
    emb = EmbedkitEmbeddings(tiny_model, normalize_embeddings=True, truncate_dim=8)
    vector = emb.embed_query("x")
    assert len(vector) == 8 and abs(np.linalg.norm(vector) - 1) < 1e-6


def test_async_embedding_does_not_block_the_loop(embeddings):
    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        vectors = await embeddings.aembed_documents(["a long-ish text to embed"] * 64)
        query = await embeddings.aembed_query("q")
        task.cancel()
        return ticks, vectors, query

    ticks, vectors, query = asyncio.run(main())
    assert ticks > 1 and len(vectors) == 64 and len(query) == 32


@pytest.fixture(params=["faiss", "sqlite"])
def store(request, tiny_model, tmp_path):
    if request.param == "faiss":
        index = FaissIndex(tiny_model, kind="hnsw")
    else:
        index = SQLIndex(tiny_model, f"sqlite:///{tmp_path}/s.db")
    return EmbedkitVectorStore(index)


DOCS = [
    Document(page_content="Cats purr when they are content.", metadata={"topic": "pets", "year": 2020}, id="c1"),
    Document(page_content="Cats purr when they are content.", metadata={"topic": "pets", "year": 2021}, id="c2"),
    Document(page_content="Cats purr when they are content!", metadata={"topic": "pets", "year": 2022}, id="c3"),
    Document(page_content="Bond markets rallied on Friday.", metadata={"topic": "finance", "year": 2021}, id="f1"),
    Document(
        page_content="The recipe needs two eggs.", metadata={"topic": "food", "year": 2019, "vegan": False}, id="r1"
    ),
]


def test_scores_best_first_and_metadata_exact(store):
    originals = [d.model_copy(deep=True) for d in DOCS]
    assert store.add_documents(DOCS) == ["c1", "c2", "c3", "f1", "r1"]
    assert DOCS == originals  # the caller's documents are untouched
    results = store.similarity_search_with_score("Do cats purr?", k=5)
    scores = [s for _, s in results]
    assert scores == sorted(scores, reverse=True) and len(results) == 5
    by_id = {d.id: d for d, _ in results}
    assert by_id["r1"].metadata == {"topic": "food", "year": 2019, "vegan": False}
    assert type(by_id["r1"].metadata["vegan"]) is bool
    relevance = store.similarity_search_with_relevance_scores("Do cats purr?", k=2)
    assert len(relevance) == 2 and all(0 <= r <= 1 for _, r in relevance)


def test_retriever_passes_filters(store):
    store.add_documents(DOCS)
    retriever = store.as_retriever(search_kwargs={"k": 3, "filter": {"topic": "pets", "year": {"$gte": 2021}}})
    docs = retriever.invoke("cats")
    assert {d.id for d in docs} == {"c2", "c3"}
    mmr = store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "filter": {"topic": {"$ne": "pets"}}})
    assert {d.id for d in mmr.invoke("cats")} == {"f1", "r1"}
    with pytest.raises(ValueError, match="unknown operator"):
        store.similarity_search("cats", filter={"year": {"$after": 2020}})


def test_mmr_returns_diverse_results(store):
    store.add_documents(DOCS)
    plain = store.similarity_search("Cats purr when they are content.", k=2)
    assert {d.id for d in plain} <= {"c1", "c2", "c3"}  # near-duplicates crowd the top
    diverse = store.max_marginal_relevance_search("Cats purr when they are content.", k=2, fetch_k=5, lambda_mult=0.3)
    assert diverse[0].id in {"c1", "c2", "c3"}
    assert diverse[1].id in {"f1", "r1"}  # the second pick is not another copy
    query = store.embeddings.embed_query("Cats purr when they are content.")
    by_vector = store.max_marginal_relevance_search_by_vector(query, k=2, fetch_k=5, lambda_mult=0.3)
    assert [d.id for d in by_vector] == [d.id for d in diverse]
    assert (
        asyncio.run(
            store.amax_marginal_relevance_search("Cats purr when they are content.", k=2, fetch_k=5, lambda_mult=0.3)
        )
        == diverse
    )


def test_injected_langchain_embeddings_of_any_dimension(tmp_path):
    fake = DeterministicFakeEmbedding(size=13)
    store = EmbedkitVectorStore.from_texts(
        ["alpha", "beta", "gamma"],
        fake,
        [{"n": 1}, {"n": 2}, {"n": 3}],
        ids=["a", "b", "g"],
        target=f"sqlite:///{tmp_path}/f.db",
    )
    assert store.index.dimension == 13 and store.embeddings is fake
    assert store.similarity_search("beta", k=1)[0].id == "b"
    assert store.similarity_search_by_vector(fake.embed_query("gamma"), k=1)[0].metadata == {"n": 3}
    assert store.delete(["b", "missing"]) is True
    assert [d.id for d in store.get_by_ids(["a", "b", "g"])] == ["a", "g"]


@pytest.mark.slow
def test_from_texts_with_an_embedkit_model(tiny_model, tmp_path):
    store = EmbedkitVectorStore.from_texts(
        ["one", "two"], EmbedkitEmbeddings(tiny_model), target=str(tmp_path / "idx"), kind="flat"
    )
    assert store.index.encoder is tiny_model  # unwrapped: no detour through Python lists
    assert len(store.similarity_search("one", k=5)) == 2
    assert len(open_index(str(tmp_path / "idx"), tiny_model)) == 2  # durable without a save()
    with pytest.warns(DeprecationWarning, match="pass target="):  # the older spelling still works
        old = EmbedkitVectorStore.from_texts(["x"], tiny_model, backend="faiss", path=str(tmp_path / "old"))
    assert old.index.path == str(tmp_path / "old") and len(old.index) == 1
    with pytest.warns(DeprecationWarning):
        old = EmbedkitVectorStore.from_texts(["x"], tiny_model, backend="sql", url=f"sqlite:///{tmp_path}/o.db")
    assert old.index.url == f"sqlite:///{tmp_path}/o.db"
    with pytest.raises(ValueError, match="backend must be 'faiss' or 'sql'"):
        EmbedkitVectorStore.from_texts(["x"], tiny_model, backend="chroma")


def test_langchain_core_stays_optional():
    code = (
        "import sys; sys.modules['langchain_core'] = None\n"
        "import embedkit, integrations\n"
        "from integrations import FaissIndex, SQLIndex, Index, Hit\n"
        "try:\n    import integrations.langchain\nexcept ImportError:\n    print('optional')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "optional"


@pytest.mark.parametrize("backend", ["faiss", "sql"])
def test_a_chunked_document_comes_back_as_its_best_chunk(minilm_path, tmp_path, backend):
    """A retriever hands over the passage that matched (the Index's own best chunk and span), not a whole
    long document; get_by_ids gives the whole document back."""
    from embedkit import SentenceTransformer

    model = SentenceTransformer(minilm_path, device="cpu")
    parts = ["Cats purr when content.", "Bond yields fell sharply.", "Soup needs salt and pepper."] * 6
    long_text = " ".join(f"{p} Note {i}." for i, p in enumerate(parts))
    url = f"sqlite:///{tmp_path}/c.db"
    index = (
        FaissIndex(model, chunk_tokens=24, chunk_overlap=4)
        if backend == "faiss"
        else SQLIndex(model, url, chunk_tokens=24, chunk_overlap=4)
    )
    store = EmbedkitVectorStore(index)
    store.add_texts([long_text, "A short note on tea."], [{"kind": "long"}, {"kind": "short"}], ids=["long", "tea"])
    hit = index.search("bond yields", k=1)[0]
    doc = store.similarity_search("bond yields", k=1)[0]
    assert hit.span is not None and doc.id == "long"
    assert doc.page_content == long_text[hit.span[0] : hit.span[1]] and "Bond yields" in doc.page_content
    assert doc.metadata == {"kind": "long", "span": list(hit.span)}
    assert store.as_retriever(search_kwargs={"k": 1}).invoke("bond yields") == [doc]
    assert store.get_by_ids(["long"])[0].page_content == long_text and store.get_by_ids(["long"])[0].metadata == {
        "kind": "long"
    }
    tea = store.similarity_search("tea", k=1, filter={"kind": "short"})[0]
    assert (tea.page_content, tea.metadata) == ("A short note on tea.", {"kind": "short"})  # one chunk: no span


@pytest.mark.slow
def test_the_reranker_works_in_a_contextual_compression_retriever(tiny_model, cross_dirs):
    from langchain_classic.retrievers import ContextualCompressionRetriever

    from embedkit import CrossEncoder
    from integrations.langchain import EmbedkitReranker

    texts = ["Cats purr when they are content.", "Dogs bark at the mail.", "Kittens sleep a lot.", "Stocks fell."]
    store = EmbedkitVectorStore.from_texts(texts, EmbedkitEmbeddings(tiny_model), ids=["a", "b", "c", "d"])
    model = CrossEncoder(cross_dirs[1], device="cpu")
    retriever = ContextualCompressionRetriever(
        base_compressor=EmbedkitReranker(model=model, top_n=2),
        base_retriever=store.as_retriever(search_kwargs={"k": 4}),
    )
    docs = retriever.invoke("cats")
    ranked = model.rank("cats", texts, top_k=2)
    assert [d.page_content for d in docs] == [texts[r["corpus_id"]] for r in ranked]
    assert [d.metadata["relevance_score"] for d in docs] == pytest.approx([r["score"] for r in ranked], abs=1e-6)
    by_length = EmbedkitReranker(model=lambda q, passages: [-len(p) for p in passages], top_n=1)
    assert by_length.compress_documents([Document(page_content=t) for t in texts], "x")[0].page_content == texts[3]
    with pytest.raises(ValueError, match="top_n must be a positive int"):
        EmbedkitReranker(model=model, top_n=0).compress_documents([Document(page_content="x")], "q")
    inside = store.as_retriever(search_kwargs={"k": 2, "rerank": model, "rerank_candidates": 4}).invoke("cats")
    assert [d.id for d in inside] == [["a", "b", "c", "d"][r["corpus_id"]] for r in ranked]


def test_unknown_keywords_are_errors_not_ignored():
    from store_workers import HashEncoder

    from integrations import FaissIndex
    from integrations.langchain import EmbedkitVectorStore

    store = EmbedkitVectorStore(FaissIndex(HashEncoder()))
    store.add_texts(["a", "b"], [{"s": 1}, {"s": 2}], ids=["a", "b"])
    calls = [
        lambda: store.similarity_search("a", filtr={"s": 1}),
        lambda: store.similarity_search_with_score("a", k=1, fliter=None),
        lambda: store.similarity_search_by_vector([0.0] * 32, filtr={}),
        lambda: store.max_marginal_relevance_search("a", lamda=0.1),
        lambda: store.add_texts(["c"], metadata=[{}]),
        lambda: store.delete(["a"], id=["b"]),
    ]
    for call, name in zip(calls, ["filtr", "fliter", "filtr", "lamda", "metadata", "id"]):
        with pytest.raises(TypeError, match=f"unexpected keyword arguments: {name}"):
            call()
    assert [d.id for d in store.similarity_search("a", k=2, filter={"s": 1})] == ["a"]
    assert len(store.index) == 2  # nothing was written or deleted by the refused calls
