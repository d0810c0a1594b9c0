"""Each framework's retriever over one SQLite index ranks exactly as ``Index.search`` does, on SciFact
documents and queries (``benchmarks/frameworks_retrieval.py`` does this on the whole corpus with
all-MiniLM-L6-v2: nDCG@10 0.6451 through every framework)."""

from __future__ import annotations

import json
import pathlib

import pytest

pytest.importorskip("haystack")
pytest.importorskip("llama_index.core")

from haystack import Pipeline  # noqa: E402
from llama_index.core import VectorStoreIndex  # noqa: E402

from integrations import SQLIndex  # noqa: E402
from integrations import haystack as hs  # noqa: E402
from integrations import langchain as lc  # noqa: E402
from integrations import llama_index as li  # noqa: E402

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def lines(name: str, n: int) -> list[dict]:
    with open(DATA / name, encoding="utf8") as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


@pytest.mark.slow
def test_every_framework_ranks_as_the_index_does(tmp_path, tiny_model, prompt_model_dir):
    corpus = lines("corpus.jsonl", 300)
    queries = [q["text"] for q in lines("queries.jsonl", 60)]
    index = SQLIndex(tiny_model, f"sqlite:///{tmp_path}/scifact.db", chunk_tokens=0)
    index.add([(d["title"] + " " + d["text"]).strip() for d in corpus], ids=[d["_id"] for d in corpus])
    own = [[h.id for h in index.search(q, k=10)] for q in queries]

    langchain = lc.EmbedkitVectorStore(index).as_retriever(search_kwargs={"k": 10})
    assert [[d.id for d in langchain.invoke(q)] for q in queries] == own

    built = VectorStoreIndex.from_vector_store(
        li.EmbedkitVectorStore(index), embed_model=li.EmbedkitEmbedding(tiny_model)
    )
    retriever = built.as_retriever(similarity_top_k=10)
    assert [[n.node.node_id for n in retriever.retrieve(q)] for q in queries] == own

    pipeline = Pipeline()
    pipeline.add_component("text", hs.EmbedkitTextEmbedder(model=prompt_model_dir, device="cpu"))
    pipeline.add_component("retriever", hs.EmbedkitEmbeddingRetriever(hs.EmbedkitDocumentStore(index=index), top_k=10))
    pipeline.connect("text.embedding", "retriever.query_embedding")
    ranked = [[d.id for d in pipeline.run({"text": {"text": q}})["retriever"]["documents"]] for q in queries]
    assert ranked == own


@pytest.mark.parametrize("framework", ["llama_index", "haystack"])
def test_a_long_input_is_stored_as_chunks_each_embedded_whole(tmp_path, tiny_model, prompt_model_dir, framework):
    """A document longer than the model takes, embedded by the framework (LlamaIndex's 1,024-token nodes;
    Haystack's document embedder), is stored as the index's own chunks, each the model's vector of its
    piece: its last words are as findable as its first. Short documents keep the framework's vectors."""
    import logging

    from haystack import Document as HaystackDocument
    from haystack.components.writers import DocumentWriter
    from llama_index.core import Document, StorageContext

    from embedkit.chunking import Chunker

    sentences = [f"Paragraph {i} is about the {w} and nothing else." for i, w in enumerate(WORDS * 6)]
    long, short = " ".join(sentences), "A short note about tea."
    index = SQLIndex(tiny_model, f"sqlite:///{tmp_path}/kb.db")
    spans = Chunker(tiny_model).spans([long])[0]
    assert spans is not None and len(spans) >= 4  # the tiny model takes a few hundred characters
    logger = logging.getLogger("integrations._shared.chunk_rows")
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger.addHandler(handler)
    try:
        if framework == "llama_index":
            store = li.EmbedkitVectorStore(index)
            VectorStoreIndex.from_documents(
                [Document(text=long, doc_id="long"), Document(text=short, doc_id="short")],
                storage_context=StorageContext.from_defaults(vector_store=store),
                embed_model=store.embedding(),
            )
        else:
            pipeline = Pipeline()
            pipeline.add_component("embedder", hs.EmbedkitDocumentEmbedder(model=prompt_model_dir, device="cpu"))
            pipeline.add_component("writer", DocumentWriter(hs.EmbedkitDocumentStore(index=index)))
            pipeline.connect("embedder.documents", "writer.documents")
            pipeline.run({"embedder": {"documents": [HaystackDocument(content=t) for t in (long, short)]}})
    finally:
        logger.removeHandler(handler)
    assert len(index) == 2 and seen == [
        "1 of 2 texts are longer than the model takes: each is stored as chunks embedded here (the vectors "
        "given for them, of their first tokens, are not used)"
    ]
    (long_id,) = [r.id for r in index if r.text == long]
    for span in spans:
        vector = tiny_model.encode_document([long[span[0] : span[1]]], normalize_embeddings=True)[0]
        hit = index.search_by_vector(vector, k=1)[0]
        assert (hit.id, hit.span) == (long_id, span) and hit.score == pytest.approx(1.0, abs=1e-5)
    vector = tiny_model.encode_document([short], normalize_embeddings=True)[0]
    hit = index.search_by_vector(vector, k=1)[0]
    assert hit.text == short and hit.span is None and hit.score == pytest.approx(1.0, abs=1e-5)


WORDS = ["river", "mountain", "violin", "harbour", "glacier", "orchard", "lantern", "compass"]
