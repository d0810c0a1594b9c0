"""Metadata filters: one language for FAISS, SQLite and PostgreSQL."""

import argparse
import json
from importlib import resources

from embedkit import SentenceTransformer
from integrations import FaissIndex

CORPUS = resources.files("integrations.cli") / "demo_corpus.jsonl"  # the corpus of `embedkit demo`
FILTERS = [
    {"topic": "space"},
    {"topic": {"$in": ["biology", "health"]}, "year": {"$gte": 2022}},
    {"$or": [{"level": "advanced"}, {"year": {"$lt": 2017}}]},
    {"$not": {"topic": {"$in": ["space", "history"]}}, "level": "intro"},
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    args = parser.parse_args()
    index = FaissIndex(SentenceTransformer(args.model), kind="hnsw")
    records = [json.loads(line) for line in CORPUS.read_text().splitlines()]
    index.add([r["text"] for r in records], [r["metadata"] for r in records], ids=[r["id"] for r in records])
    for filter in FILTERS:
        hits = index.search("new discoveries", k=4, filter=filter)
        print(f"filter {json.dumps(filter)}")
        for hit in hits:
            print(f"  {hit.score:.3f}  {hit.id:<9} {json.dumps(hit.metadata)}")
    try:
        index.search("x", filter={"year": {"$between": [2018, 2020]}})
    except ValueError as exc:
        print(f"\nA malformed filter is refused: {exc}")


if __name__ == "__main__":
    main()
