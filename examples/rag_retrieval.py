"""RAG-style retrieval: index a corpus in SQLite, retrieve context for a question, build an LLM prompt.

python examples/rag_retrieval.py "How do vaccines work?"
"""

import argparse
import json
import tempfile
from importlib import resources

from embedkit import SentenceTransformer
from integrations import SQLIndex

CORPUS = resources.files("integrations.cli") / "demo_corpus.jsonl"  # the corpus of `embedkit demo`


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("question", nargs="?", default="How do vaccines protect people?")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("-k", type=int, default=3)
    args = parser.parse_args()

    records = [json.loads(line) for line in CORPUS.read_text().splitlines()]
    with tempfile.TemporaryDirectory() as tmp:
        index = SQLIndex(SentenceTransformer(args.model), f"sqlite:///{tmp}/rag.db")
        index.add([r["text"] for r in records], [r["metadata"] for r in records], ids=[r["id"] for r in records])
        hits = index.search(args.question, k=args.k)
        index.close()

    context = "\n".join(f"[{h.id}] {h.text}" for h in hits)
    print(f"Retrieved {len(hits)} passages for: {args.question}\n")
    for h in hits:
        print(f"  {h.score:.3f}  [{h.id}] {h.text}")
    print("\nPrompt for the LLM:\n")
    print("Answer the question using only the context below. Cite passage ids.\n")
    print(f"Context:\n{context}\n\nQuestion: {args.question}")


if __name__ == "__main__":
    main()
