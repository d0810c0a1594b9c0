"""RAG over long documents: chunked by the index, found by hybrid (keyword + vector) search.

python examples/hybrid_rag.py "What does CRISPR-Cas9 cut?"

The example corpus is joined into one article per topic, a few hundred tokens each. The index splits each
article into chunks of 32 tokens (up to 8 shared with the next) and stores them under the article's id. Hybrid
search fuses the keyword index (exact terms such as "CRISPR-Cas9") with vector search (meaning), returns
each article once, and points at its best chunk: that chunk is the context handed to the LLM.
"""

import argparse
import json
import tempfile
from collections import defaultdict
from importlib import resources

from embedkit import SentenceTransformer
from integrations import SQLIndex

CORPUS = resources.files("integrations.cli") / "demo_corpus.jsonl"  # the corpus of `embedkit demo`


def articles() -> dict[str, str]:
    by_topic = defaultdict(list)
    for line in CORPUS.read_text().splitlines():
        record = json.loads(line)
        by_topic[record["metadata"]["topic"]].append(record["text"])
    return {topic: " ".join(texts) for topic, texts in by_topic.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("question", nargs="?", default="What does CRISPR-Cas9 cut?")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("-k", type=int, default=2)
    args = parser.parse_args()

    docs = articles()
    with tempfile.TemporaryDirectory() as tmp:
        with SQLIndex(
            SentenceTransformer(args.model), f"sqlite:///{tmp}/rag.db", chunk_tokens=32, chunk_overlap=8
        ) as index:
            index.add(list(docs.values()), [{"topic": t} for t in docs], ids=list(docs))
            chunks = sum(len(spans or [None]) for spans in index.chunker.spans(list(docs.values())))
            print(f"{len(index)} articles, {chunks} chunks\n")
            hits = index.search(args.question, k=args.k, mode="hybrid")

    print(f"Hybrid search for: {args.question}")
    for hit in hits:
        start, end = hit.span or (0, len(hit.text))
        print(
            f"  [{hit.id}] fused {hit.score:.4f}, ranks {hit.ranks}, chunk {start}-{end} of {len(hit.text)} characters"
        )
    context = "\n".join(f"[{h.id}] {h.passage.strip()}" for h in hits)
    print("\nPrompt for the LLM:\n")
    print("Answer the question using only the context below. Cite the article ids.\n")
    print(f"Context:\n{context}\n\nQuestion: {args.question}")


if __name__ == "__main__":
    main()
