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
