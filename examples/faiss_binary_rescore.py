"""Binary (ubinary) FAISS index with rescoring, against exact float32 search on the same corpus.

The binary index keeps 1 bit per dimension for the Hamming search and int8 vectors for re-ranking
the k x 4 candidates it returns.
"""

import argparse
import json
from importlib import resources

from embedkit import SentenceTransformer
from integrations import FaissIndex

CORPUS = resources.files("integrations.cli") / "demo_corpus.jsonl"  # the corpus of `embedkit demo`
QUESTIONS = [
    "Why do earthquakes happen?",
    "How is bread made without packaged yeast?",
    "What makes web traffic private?",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    args = parser.parse_args()
    model = SentenceTransformer(args.model)
    records = [json.loads(line) for line in CORPUS.read_text().splitlines()]
    texts, ids = [r["text"] for r in records], [r["id"] for r in records]
    embeddings = model.encode_document(texts)  # encode once, store in both indexes

    exact = FaissIndex(model, kind="flat", precision="float32")
    binary = FaissIndex(model, kind="flat", precision="ubinary", rescore=True)
    for index in (exact, binary):
        index.add_embeddings(embeddings, texts, ids=ids)

    agree = 0
    for question in QUESTIONS:
        e, b = exact.search(question, k=3), binary.search(question, k=3)
        agree += [h.id for h in e] == [h.id for h in b]
        print(f"Q: {question}")
        for he, hb in zip(e, b):
            print(f"  exact {he.score:.3f} {he.id:<9} | ubinary+rescore {hb.score:.3f} {hb.id}")
    print(
        f"\nSame top-3 as exact search for {agree}/{len(QUESTIONS)} questions, "
        f"with {model.get_sentence_embedding_dimension() // 8} bytes per vector in the binary index."
    )


if __name__ == "__main__":
    main()
