"""The store commands of the ``embedkit`` CLI: add, search and demo."""

from __future__ import annotations

import json
import sys
from importlib import resources

from tqdm.auto import tqdm

from embedkit.cli import load_model, read_records

from .index import Hit, Index
from .open import open_index

DEMO_QUERIES = [
    ("How do plants get their energy?", None),
    ("ways to keep money safe from market swings", None),
    ("What happened in space exploration?", {"topic": "history"}),
    ("cooking techniques for vegetables", {"level": "intro", "year": {"$gte": 2018}}),
]


def add_records(index: Index, records: list[dict], batch_size: int = 256, quiet: bool = False) -> None:
    """Add in batches (one transaction each, durable when it returns), with a progress bar."""
    with tqdm(total=len(records), desc="Adding", unit="doc", disable=quiet, file=sys.stderr) as bar:
        for start in range(0, len(records), batch_size):
            batch = records[start : start + batch_size]
            index.add([r["text"] for r in batch], [r["metadata"] for r in batch], ids=[r["id"] for r in batch])
            bar.update(len(batch))
    index.save()


def format_hits(query: str, hits: list[Hit], filter: dict | None = None) -> str:
    lines = [f"Q: {query}" + (f"   filter={json.dumps(filter)}" if filter else "")]
    if not hits:
        lines.append("   (no match)")
    for rank, hit in enumerate(hits, 1):
        text = hit.text if len(hit.text) <= 100 else hit.text[:97] + "..."
        lines.append(f"  {rank}. {hit.score:.3f}  {hit.id:<10} {text}")
        if hit.metadata:
            lines.append(f"     {json.dumps(hit.metadata, ensure_ascii=False)}")
    return "\n".join(lines)


def cmd_add(args) -> None:
    records = read_records(args.file, args.field)
    index = open_index(args.db, load_model(args.model, args.device, args.quiet))
    add_records(index, records, args.batch_size, args.quiet)
    if not args.quiet:
        print(f"{args.db}: added {len(records)} documents, {len(index)} in total", file=sys.stderr)


def cmd_search(args) -> None:
    try:
        filter = json.loads(args.filter) if args.filter else None
    except json.JSONDecodeError as exc:
        raise ValueError(f"--filter is not valid JSON: {exc.msg}") from None
    index = open_index(args.db, load_model(args.model, args.device, quiet=True))
    hits = index.search(args.query, k=args.k, filter=filter)
    if args.json:
        print(
            json.dumps(
                [{"id": h.id, "score": h.score, "text": h.text, "metadata": h.metadata} for h in hits],
                ensure_ascii=False,
            )
        )
    else:
        print(format_hits(args.query, hits, filter))


def demo_corpus() -> list[dict]:
    path = resources.files("embedkit.examples") / "corpus.jsonl"
    with resources.as_file(path) as file:
        return read_records(str(file))


def cmd_demo(args) -> None:
    from .sql import SQLIndex

    model = load_model(args.model, args.device, args.quiet)
    index = SQLIndex(model, args.db)
    records = demo_corpus()
    add_records(index, records, quiet=args.quiet)
    print(f"Indexed {len(records)} documents into {args.db} with {args.model} ({len(index)} stored).\n")
    for query, filter in DEMO_QUERIES:
        print(format_hits(query, index.search(query, k=3, filter=filter), filter) + "\n")
    print(f'Try: embedkit search {args.db} "your question" -k 5')


def register(sub, common) -> None:
    """Add the add/search/demo subcommands to the CLI's subparsers."""
    add = sub.add_parser(
        "add", parents=[common], help="add a JSONL file (id, text, metadata) or text lines to an index"
    )
    add.add_argument("db", help="a SQLAlchemy URL (sqlite:///docs.db, postgresql+psycopg://...) or a FAISS folder")
    add.add_argument("file")
    add.add_argument("--field", default="text", help="the JSONL field that holds the text")
    add.add_argument("--batch-size", type=int, default=256, help="documents per transaction")
    add.set_defaults(func=cmd_add)

    search = sub.add_parser("search", parents=[common], help="search an index")
    search.add_argument("db")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=5)
    search.add_argument("--filter", help='a JSON filter, e.g. \'{"source": "a.pdf", "page": {"$gte": 2}}\'')
    search.add_argument("--json", action="store_true", help="print JSON instead of text")
    search.set_defaults(func=cmd_search)

    demo = sub.add_parser("demo", parents=[common], help="index the bundled example corpus into SQLite and search it")
    demo.add_argument("--db", default="sqlite:///embedkit-demo.db")
    demo.set_defaults(func=cmd_demo)
