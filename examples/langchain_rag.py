"""A LangChain retriever over the example corpus, backed by an embedkit SQLite store.

pip install ".[bundled,langchain]"    # langchain-core
python examples/langchain_rag.py "How do bees help flowers?"
"""

import argparse
import json
import tempfile
from importlib import resources

from langchain_core.documents import Document

from integrations import SQLIndex
from integrations.langchain import EmbedkitEmbeddings, EmbedkitVectorStore

CORPUS = resources.files("integrations.cli") / "demo_corpus.jsonl"  # the corpus of `embedkit demo`


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("question", nargs="?", default="How do bees help flowers?")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    args = parser.parse_args()

    embeddings = EmbedkitEmbeddings(args.model)
    records = [json.loads(line) for line in CORPUS.read_text().splitlines()]
    docs = [Document(page_content=r["text"], metadata=r["metadata"], id=r["id"]) for r in records]
    with tempfile.TemporaryDirectory() as tmp:
        store = EmbedkitVectorStore(SQLIndex(embeddings.model, f"sqlite:///{tmp}/lc.db"))
        store.add_documents(docs)
        retriever = store.as_retriever(search_kwargs={"k": 3})
        print(f"Top documents for: {args.question}")
        for doc in retriever.invoke(args.question):
            print(f"  [{doc.id}] {doc.page_content}  {json.dumps(doc.metadata)}")
        filtered = store.as_retriever(search_kwargs={"k": 2, "filter": {"topic": "history"}})
        print("\nOnly history:")
        for doc in filtered.invoke(args.question):
            print(f"  [{doc.id}] {doc.page_content}")
        store.index.close()


if __name__ == "__main__":
    main()
