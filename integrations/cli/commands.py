"""The store commands of the ``embedkit`` CLI: add, search and demo. ``embedkit.cli`` parses the
arguments and calls these; they raise ValueError (or ImportError for a missing extra) and never exit."""

from __future__ import annotations

import glob
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from importlib import resources

from tqdm.auto import tqdm

from integrations.cli.readers import Document, FileDocuments, find_files, read_file
from integrations.index import Index
from integrations.records import Hit
from integrations.targets import check_index, open_index

DEMO_QUERIES = [
    ("How do plants get their energy?", None),
    ("ways to keep money safe from market swings", None),
    ("What happened in space exploration?", {"topic": "history"}),
    ("cooking techniques for vegetables", {"level": "intro", "year": {"$gte": 2018}}),
]


def add_documents(index: Index, documents: list[Document], batch_size: int = 256, bar=None, counts=None) -> Counter:
    """Add in batches, one transaction each (durable when it returns). Documents stored with the same
    text and metadata are left alone. Counts the added, updated and unchanged documents into ``counts``."""
    counts = Counter() if counts is None else counts
    for start in range(0, len(documents), batch_size):
        batch = documents[start : start + batch_size]
        stored = {r.id: r for r in index.get([d.id for d in batch])}
        changed = [d for d in batch if d.id not in stored or _differs(stored[d.id], d)]
        if changed:
            index.add([d.text for d in changed], [d.metadata for d in changed], ids=[d.id for d in changed])
        counts["added"] += sum(d.id not in stored for d in changed)
        counts["updated"] += sum(d.id in stored for d in changed)
        counts["unchanged"] += len(batch) - len(changed)
        if bar is not None:
            bar.update(len(batch))
            bar.set_postfix(counts, refresh=False)
    return counts


def _differs(record, document: Document) -> bool:
    return (record.text, record.metadata) != (document.text, document.metadata)


def read_paths(paths: list[str], field: str = "text") -> list[FileDocuments]:
    """Every file of ``paths`` read and checked (see ``embedkit.records``), before anything is written."""
    files = [read_file(path, source, field) for path, source in find_files(paths)]
    twice = [i for i, n in Counter(d.id for f in files for d in f.documents).items() if n > 1]
    if twice:
        raise ValueError(f"{len(twice)} ids appear more than once in the input, e.g. {twice[0]!r}")
    return files


def add_files(index: Index, files: list[FileDocuments], batch_size: int = 256, quiet: bool = False) -> Counter:
    """Add the documents of ``files``. Documents that a file no longer holds (stored under its ``source``
    with an id the file no longer yields) are removed, so re-adding a changed folder leaves no stale copies."""
    counts = Counter(blank=sum(f.blank for f in files))
    documents = [d for f in files for d in f.documents]
    with tqdm(total=len(documents), desc="Adding", unit="doc", disable=quiet, file=sys.stderr) as bar:
        add_documents(index, documents, batch_size, bar, counts)
    for file in files:
        kept = {d.id for d in file.documents}
        stale = [r.id for r in index.get(filter={"source": file.source}) if r.id not in kept]
        counts["removed"] += index.delete(stale) if stale else 0
    index.save()
    return counts


def format_hits(query: str, hits: list[Hit], filter: dict | None = None) -> str:
    lines = [f"Q: {query}" + (f"   filter={json.dumps(filter)}" if filter else "")]
    if not hits:
        lines.append("   (no match)")
    for rank, hit in enumerate(hits, 1):
        text = " ".join(hit.passage.split())
        text = text if len(text) <= 100 else text[:97] + "..."
        lines.append(f"  {rank}. {hit.score:.3f}  {hit.id:<10} {text}")
        if hit.metadata:
            lines.append(f"     {json.dumps(hit.metadata, ensure_ascii=False)}")
    return "\n".join(lines)


def cmd_add(args, load_model: Callable) -> None:
    files = read_paths(args.paths, args.field)  # a bad input fails before the model loads or the index opens
    chunking = {"chunk_tokens": args.chunk_tokens, "chunk_overlap": args.chunk_overlap}
    with open_index(args.db, load_model(), **chunking) as index:
        counts = add_files(index, files, args.batch_size, args.quiet)
        total = len(index)
    summary = ", ".join(f"{counts[k]} {k}" for k in ("added", "updated", "unchanged", "removed"))
    print(f"{args.db}: {summary}, {counts['blank']} blank skipped; {total} documents in total", file=sys.stderr)


def cmd_search(args, load_model: Callable) -> None:
    try:
        filter = json.loads(args.filter) if args.filter else None
    except json.JSONDecodeError as exc:
        raise ValueError(f"--filter is not valid JSON: {exc.msg}") from None
    rerank = getattr(args, "rerank", None)
    if rerank is not None and args.rerank_candidates < args.k:  # before any model loads
        raise ValueError(f"--rerank-candidates {args.rerank_candidates} is less than -k {args.k}")
    check_index(args.db)  # a missing index fails before the model loads, and nothing is created
    with open_index(args.db, load_model()) as index:
        if rerank is not None:
            from embedkit import CrossEncoder

            rerank = CrossEncoder(rerank, device=getattr(args, "device", None))
        options = {"rerank": rerank, "rerank_candidates": args.rerank_candidates} if rerank is not None else {}
        hits = index.search(args.query, k=args.k, filter=filter, mode=args.mode, **options)
    if args.json:
        rows = [
            {"id": h.id, "score": h.score, "text": h.text, "metadata": h.metadata, "span": h.span, "ranks": h.ranks}
            for h in hits
        ]
        print(json.dumps(rows, ensure_ascii=False))
    else:
        print(format_hits(args.query, hits, filter))


def cmd_encode_ray(args, load_model: Callable) -> None:
    """``embedkit encode --ray``: the inputs (read here, with the ids of ``embedkit add``) are embedded on a
    Ray cluster into a Parquet folder or, for a PostgreSQL URL, a pgvector table (``documents``)."""
    from embedkit._optional import require
    from embedkit.distributed import embed_dataset

    require("ray", "embedkit encode --ray")
    import ray

    if os.path.exists(args.ray) or glob.has_magic(args.ray):  # --ray took an input for its address
        args.input, args.ray = [args.ray, *args.input], "local"
    if not args.input:
        raise ValueError("encode --ray needs at least one input file, folder or glob")
    files = read_paths(args.input, args.field)
    rows = [{"id": d.id, "text": d.text, "source": d.metadata.get("source")} for f in files for d in f.documents]
    ray.init(address=None if args.ray == "local" else args.ray, ignore_reinit_error=True, log_to_driver=False)
    role = None if args.role == "none" else args.role
    options = {"precision": args.precision, "normalize_embeddings": args.normalize, "truncate_dim": args.truncate_dim}
    options |= {"chunk_tokens": args.chunk_tokens, "chunk_overlap": args.chunk_overlap}
    ds = embed_dataset(ray.data.from_items(rows), args.model, role=role, batch_size=args.batch_size, **options)
    if "://" in args.output:
        from integrations.ray_writers import write_pgvector

        write_pgvector(ds, args.output, args.model, metadata_columns=["source"])
    else:  # a relative folder means this machine's working folder, not the workers'
        ds.write_parquet(os.path.abspath(args.output))
    if not args.quiet:  # documents, whether or not they were stored in chunks
        print(f"embedded {len(rows)} documents into {args.output}", file=sys.stderr)


def demo_corpus() -> list[Document]:
    text = (resources.files("integrations.cli") / "demo_corpus.jsonl").read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [Document(r["id"], r["text"], r.get("metadata", {})) for r in records]


def cmd_demo(args, load_model: Callable) -> None:
    from integrations.sql import SQLIndex

    documents = demo_corpus()
    with SQLIndex(load_model(), args.db) as index:
        with tqdm(total=len(documents), desc="Adding", unit="doc", disable=args.quiet, file=sys.stderr) as bar:
            add_documents(index, documents, bar=bar)
        print(f"Indexed {len(documents)} documents into {args.db} with {args.model} ({len(index)} stored).\n")
        for query, filter in DEMO_QUERIES:
            print(format_hits(query, index.search(query, k=3, filter=filter), filter) + "\n")
    print(f'Try: embedkit search {args.db} "your question" -k 5')
    if args.serve:
        args.index, args.reranker = [f"demo={args.db}"], None
        cmd_serve(args, load_model)


def cmd_serve(args, load_model: Callable) -> None:
    """Serve the model (and the reranker and indexes) over HTTP until SIGTERM or Ctrl-C, which drain
    the requests in flight. An index that does not exist yet is created."""
    from integrations.cli.serve import serve

    indexes = {}
    for spec in args.index:
        name, sep, target = spec.partition("=")
        if not sep or not name or not target:
            raise ValueError(f"--index takes NAME=TARGET (e.g. docs=sqlite:///docs.db), got {spec!r}")
        if name in indexes:
            raise ValueError(f"--index {name!r} is given twice")
        indexes[name] = target
    api_key = args.api_key or os.environ.get("EMBEDKIT_API_KEY") or None
    serve(args, load_model, indexes, api_key)
