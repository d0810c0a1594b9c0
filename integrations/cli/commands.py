"""The store commands of the ``embedkit`` CLI: add, search and demo. ``embedkit.cli`` parses the
arguments and calls these; they raise ValueError (or ImportError for a missing extra) and never exit."""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from importlib import resources

from tqdm.auto import tqdm

from integrations._shared.hit_view import as_json, heading_path, snippet
from integrations.cli.batches import Pace, batches, interruptible, measure
from integrations.cli.fields import RecordFields
from integrations.cli.inspection import warn_unknown_fields
from integrations.cli.readers import (
    Document,
    FileDocuments,
    Listing,
    PartialSync,
    Trouble,
    UndecodableFile,
    current_source,
    find_files,
    read_file,
    shown,
)
from integrations.errors import NotAnIndexError
from integrations.index import Index
from integrations.records import Hit
from integrations.targets import check_index, open_store

DEMO_QUERIES = [
    ("How do plants get their energy?", None),
    ("ways to keep money safe from market swings", None),
    ("What happened in space exploration?", {"topic": "history"}),
    ("cooking techniques for vegetables", {"level": "intro", "year": {"$gte": 2018}}),
]


def add_documents(index: Index, documents: list[Document], batch_size: int = 256, quiet: bool = True, counts=None):
    """Add in batches of about two seconds of work and at most ``batch_size`` chunks, one transaction each
    (durable when it returns; see ``integrations.cli.batches``, which also splits very long documents into
    parts), with a progress bar
    counting chunks unless ``quiet``. Documents stored with the same text and metadata are left alone;
    those whose text is the same but metadata differs (a paragraph that moved down) get the new metadata
    without being embedded again. Counts the added, updated (and of those, metadata only) and unchanged
    documents into ``counts``; returns the ids written or kept, parts included."""
    counts = Counter() if counts is None else counts
    measured = measure(index, documents)
    total = sum(n for _, n in measured)
    with (
        interruptible() as check,
        tqdm(total=total, desc="Adding", unit="chunk", disable=quiet, file=sys.stderr) as bar,
    ):
        pace = Pace(batch_size)
        for batch, chunks in batches(measured, pace):
            check()
            started = time.monotonic()
            _write(index, batch, counts)
            pace.took(chunks, time.monotonic() - started)
            bar.update(chunks)
            bar.set_postfix({k: counts[k] for k in ("added", "updated", "unchanged")}, refresh=False)
    return [d.id for d, _ in measured]


def _write(index: Index, batch: list[Document], counts: Counter) -> None:
    """One batch, counted into ``counts``; a Ctrl-C anywhere in it counts what of it the index holds then
    (it may land after the commit and before the count), so the interrupted add says what it kept."""
    stored = {r.id: r for r in index.get([d.id for d in batch])}
    changed = [d for d in batch if d.id not in stored or stored[d.id].text != d.text]
    relabelled = [d for d in batch if d.id in stored and stored[d.id].text == d.text and _differs(stored[d.id], d)]
    before = counts.copy()
    try:
        if changed:
            index.add([d.text for d in changed], [d.metadata for d in changed], ids=[d.id for d in changed])
        if relabelled:
            index.update_metadata([d.id for d in relabelled], [d.metadata for d in relabelled])
        _tally(counts, stored, changed, relabelled)
    except KeyboardInterrupt:
        now = {r.id: r for r in index.get([d.id for d in changed + relabelled])}
        counts.clear()
        counts.update(before)
        _tally(
            counts,
            stored,
            [d for d in changed if d.id in now and not _differs(now[d.id], d)],
            [d for d in relabelled if d.id in now and not _differs(now[d.id], d)],
        )
        raise
    counts["unchanged"] += len(batch) - len(changed) - len(relabelled)


def _tally(counts: Counter, stored: dict, changed: list[Document], relabelled: list[Document]) -> None:
    counts["added"] += sum(d.id not in stored for d in changed)
    counts["updated"] += sum(d.id in stored for d in changed) + len(relabelled)
    counts["metadata only"] += len(relabelled)


def _differs(record, document: Document) -> bool:
    return (record.text, record.metadata) != (document.text, document.metadata)


def read_paths(
    paths: list[str],
    field: str | list[str] | None = "text",
    *,
    unit: str = "file",
    id_field: str | list[str] | None = "id",
    encoding: str = "utf-8",
    strict: bool = False,
) -> tuple[list[FileDocuments], Listing]:
    """Every file of ``paths`` read and checked (see ``integrations.cli.readers``), before anything is
    written: (the files read, the listing). ``field`` and ``id_field`` name the text's and the id's field
    of JSONL and CSV files, for all or per file (``integrations.cli.fields``). A file that cannot be read or
    decoded joins the listing's ``trouble``; with ``strict``, any trouble is an error instead."""
    listing = find_files(paths)
    fields, files = RecordFields(field, id_field), []
    named = [fields.of(f) for f in listing.found]
    fields.check_used()  # a mistyped pattern is named before a file that needed it fails
    for f, keywords in zip(listing.found, named):
        try:
            files.append(read_file(f.path, f.source, unit=unit, encoding=encoding, root=f.root, **keywords))
        except UndecodableFile as exc:
            listing.trouble.append(Trouble(f.source, "undecodable", exc.reason))
        except OSError as exc:
            listing.trouble.append(Trouble(f.source, "unreadable", f"cannot be read ({exc.strerror or exc})"))
    if strict and listing.trouble:
        first = listing.trouble[0]
        raise ValueError(
            f"{shown(first.path)}: {first.why} (--strict: {len(listing.trouble)} such paths; nothing written)"
        )
    twice = [i for i, n in Counter(d.id for f in files for d in f.documents).items() if n > 1]
    if twice:
        raise ValueError(f"{len(twice)} ids appear more than once in the input, e.g. {twice[0]!r}")
    return files, listing


def add_files(
    index: Index,
    files: list[FileDocuments],
    batch_size: int = 256,
    quiet: bool = False,
    listing: Listing | None = None,
    counts: Counter | None = None,
    allow_empty: bool = False,
) -> Counter:
    """Add the documents of ``files``. Documents that a file no longer holds are removed, so re-adding a
    changed file leaves no stale copies. For the folders walked in ``listing`` (None: no pruning), so are
    the documents of files that the walk saw vanish, and those stored under another CLI's ids for files
    still there; nothing under a path in the listing's ``trouble`` is removed, and a folder that holds no
    files keeps its documents (joining the trouble) unless ``allow_empty``."""
    counts = Counter() if counts is None else counts
    counts["blank"] += sum(f.blank for f in files)
    kept = set(add_documents(index, [d for f in files for d in f.documents], batch_size, quiet, counts))
    for file in files:
        stale = [r.id for r in index.get(filter={"source": file.source}) if r.id not in kept]
        renamed = sum(f"{file.source}#{i}" in kept for i in stale)  # a record under the previous CLI's bare id
        counts["migrated"] += renamed
        counts["removed"] += (index.delete(stale) if stale else 0) - renamed
    for root in listing.roots if listing is not None else ():
        _prune(index, root, listing, kept, counts, allow_empty)
    index.save()
    return counts


def _prune(index: Index, root: str, listing: Listing, kept: set, counts: Counter, allow_empty: bool) -> None:
    """Remove what ``root`` held and its walk saw vanish, and what earlier CLIs stored for its files."""
    if listing.untouchable(root):  # the folder itself could not be listed
        return
    stored = [r for r in index.get(filter={"root": root}) if r.id not in kept]
    if not any(f.root == root for f in listing.found):
        if stored and not allow_empty:
            why = f"holds no files; its {len(stored)} stored documents were kept (--allow-empty removes them)"
            listing.trouble.append(Trouble(root, "empty folder", why))
            return
    present = {f.source for f in listing.found}
    gone, migrated = [], []
    for r in stored:
        source = current_source(r.metadata.get("source"), root)
        if source in present:
            if source != r.metadata.get("source"):  # the file's documents under an earlier CLI's ids
                migrated.append(r.id)
        elif isinstance(source, str) and not listing.untouchable(source):
            gone.append(r)
    if gone:
        counts["removed"] += index.delete([r.id for r in gone])
        counts["files gone"] += len({r.metadata.get("source") for r in gone})
    counts["migrated"] += index.delete(migrated) if migrated else 0
    counts["migrated"] += _migrate(index, root, listing)


def _migrate(index: Index, root: str, listing: Listing) -> int:
    """Delete what the first CLI stored for this folder's files: no ``root``, and ``source`` as typed
    then, a path that resolves into ``root`` from here (and was not left untouched by the walk) or that
    ends with a current source's folder name and path."""
    old = index.get(filter={"$and": [{"root": {"$exists": False}}, {"source": {"$exists": True}}]})
    named = {os.path.basename(root) + "/" + os.path.relpath(f.source, root) for f in listing.found if f.root == root}
    ours = []
    for r in old:
        source = r.metadata["source"]
        if not isinstance(source, str):
            continue
        resolved = os.path.realpath(source)
        inside = resolved.startswith(root + os.sep) and not listing.untouchable(resolved)
        if inside or any(source == s or source.endswith("/" + s) for s in named):
            ours.append(r.id)
    return index.delete(ours) if ours else 0


def format_hits(query: str, hits: list[Hit], filter: dict | None = None, full: bool = False, bold=False) -> str:
    """Hits as text: rank, score, id and a snippet of the passage around the first matching word (in bold
    with ``bold``), the headings it sits under, the metadata, and with ``full`` the whole document."""
    lines = [f"Q: {query}" + (f"   filter={json.dumps(filter)}" if filter else "")]
    if not hits:
        lines.append("   (no match)")
    mark = (lambda word: f"\033[1m{word}\033[0m") if bold else (lambda word: word)
    for rank, hit in enumerate(hits, 1):
        lines.append(f"  {rank}. {hit.score:.3f}  {hit.id:<10} {snippet(hit, 100, mark)}")
        if under := heading_path(hit):
            lines.append(f"     under: {' > '.join(under)}")
        if hit.metadata:
            lines.append(f"     {json.dumps(hit.metadata, ensure_ascii=False)}")
        if full:
            lines += ["     " + line for line in hit.text.splitlines()] + [""]
    return "\n".join(lines)


def cmd_add(args, load_model: Callable) -> None:
    check_parent(args.db)  # a bad target or input fails before the model loads or the index opens
    files, listing = read_paths(
        args.paths, args.field, unit=args.unit, id_field=args.id_field, encoding=args.encoding, strict=args.strict
    )
    chunking = {"chunk_tokens": args.chunk_tokens, "chunk_overlap": args.chunk_overlap}
    counts = Counter()
    with open_store(args.db, load_model(), args.sparse_model, getattr(args, "device", None), **chunking) as index:
        try:
            prune = None if args.no_prune else listing
            add_files(index, files, args.batch_size, args.quiet, prune, counts, args.allow_empty)
        except KeyboardInterrupt:
            written = counts["added"] + counts["updated"]
            print(
                f"\n{args.db}: interrupted; {written} documents were written and are kept. "
                "Run the same command again to add the rest (what is stored unchanged is skipped).",
                file=sys.stderr,
            )
            raise
        total = len(index)
    summary = ", ".join(f"{counts[k]} {k}" for k in ("added", "updated", "unchanged", "removed"))
    if counts["metadata only"]:
        summary = summary.replace(" updated", f" updated ({counts['metadata only']} metadata only)", 1)
    if counts["files gone"]:
        summary += f" ({counts['files gone']} files gone)"
    if counts["migrated"]:
        summary += f", {counts['migrated']} stored under older ids replaced"
    skipped = listing.skipped + Counter(t.kind for t in listing.trouble)
    left_out = ", ".join(f"{n} {why}" for why, n in sorted(skipped.items()))
    print(
        f"{args.db}: {summary}, {counts['blank']} blank skipped; {total} documents in total"
        + (f"; skipped: {left_out}" if left_out else ""),
        file=sys.stderr,
    )
    for why, paths in listing.named.items():
        more = f" and {len(paths) - 5} more" if len(paths) > 5 else ""
        print(f"  {why}: {', '.join(shown(p) for p in paths[:5])}{more}", file=sys.stderr)
    for t in listing.trouble:
        print(f"  skipped {shown(t.path)}: {t.why}", file=sys.stderr)
    if listing.trouble:
        raise PartialSync(
            f"partial sync: {len(listing.trouble)} paths above could not be taken; what the index held from "
            "them was kept as it was"
        )


def check_parent(target: str) -> None:
    """A SQLite file or FAISS folder whose parent folder does not exist, or a plain file given as a FAISS
    folder (a SQLite file given without ``sqlite:///``), is a one-line error, at once."""
    if "://" in target:
        if not target.startswith("sqlite:///") or target.startswith("sqlite:///:memory:"):
            return
        path = target[len("sqlite:///") :].split("?", 1)[0]
    else:
        path = target
        if os.path.isfile(path):
            from integrations._shared.sqlite_files import file_hint

            raise NotAnIndexError(file_hint(path))
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{target}: the folder {parent} does not exist")


def cmd_search(args, load_model: Callable) -> None:
    try:
        filter = json.loads(args.filter) if args.filter else None
    except json.JSONDecodeError as exc:
        raise ValueError(f"--filter is not valid JSON: {exc.msg}") from None
    rerank = getattr(args, "rerank", None)
    if rerank is not None and args.rerank_candidates < args.k:  # before any model loads
        raise ValueError(f"--rerank-candidates {args.rerank_candidates} is less than -k {args.k}")
    check_index(args.db)  # a missing index fails before the model loads, and nothing is created
    if rerank is not None:  # a bad reranker name fails before the (larger) embedding model loads
        from embedkit import CrossEncoder

        rerank = CrossEncoder(rerank, device=getattr(args, "device", None))
    sparse = args.mode in ("sparse", "hybrid")  # only these load the index's sparse model
    with open_store(args.db, load_model(), None, getattr(args, "device", None), sparse) as index:
        options = {"rerank": rerank, "rerank_candidates": args.rerank_candidates} if rerank is not None else {}
        hits = index.search(args.query, k=args.k, filter=filter, mode=args.mode, **options)
        warn_unknown_fields(index, filter)
    if args.json:
        print(json.dumps([as_json(h, args.full) for h in hits], ensure_ascii=False))
    else:
        bold = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        print(format_hits(args.query, hits, filter, args.full, bold))


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
    files = read_paths(args.input, args.field, unit="line")[0]
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
        add_documents(index, documents, quiet=args.quiet)
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
    serve(args, load_model, indexes)
