"""The ``embedkit`` command.

Parsing imports nothing heavy, so ``--help`` and ``--version`` answer at once: torch, transformers and
the stores load only when a command runs. Commands raise errors; only ``main()`` turns them into exit
codes and messages.
"""

from __future__ import annotations

import argparse
import functools
import sys

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DB_HELP = "the index: a FAISS folder, or a SQLAlchemy URL (sqlite:///docs.db, postgresql+psycopg://...)"
PRECISIONS = ["float32", "int8", "uint8", "binary", "ubinary"]
DISTRIBUTION = "embedkit-search"


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        from embedkit import __version__

        return __version__


def load_model(name: str, device: str | None = None, verbose: bool = False, backend: str = "torch"):
    from embedkit import SentenceTransformer

    if not verbose:  # transformers' "Loading weights" bar says nothing a user needs
        import transformers

        transformers.utils.logging.disable_progress_bar()
    return SentenceTransformer(name, device=device, backend=backend)


def cmd_encode(args: argparse.Namespace, load) -> None:
    if args.ray is not None:
        return store_command("cmd_encode_ray")(args, load)
    if len(args.input) != 1:
        raise ValueError(f"encode takes one input (or several with --ray), got {len(args.input)}")
    if args.chunk_tokens != 0:
        raise ValueError("encode --chunk-tokens needs --ray (a .npy file holds a row per text)")
    args.input = args.input[0]
    from integrations.cli.readers import iter_texts

    # A first pass counts the texts for the progress bar and finds a bad record before any encoding.
    total = None if args.input == "-" else sum(1 for _ in iter_texts(args.input, args.field))
    model = load()
    prompt = {"query": model.query_prompt, "document": model.document_prompt}.get(args.role)
    emb = model.encode_to_file(
        iter_texts(args.input, args.field),
        args.output,
        resume=args.resume,
        total=total,
        prompt=prompt,
        batch_size=args.batch_size,
        show_progress_bar=not args.quiet,
        normalize_embeddings=args.normalize,
        precision=args.precision,
        truncate_dim=args.truncate_dim,
    )
    if not args.quiet:
        print(
            f"wrote {emb.shape[0]} embeddings of shape {emb.shape[1:]} ({emb.dtype}) to {args.output}", file=sys.stderr
        )


def store_command(name: str, module: str = "commands"):
    def run(args: argparse.Namespace, load) -> None:
        import importlib

        getattr(importlib.import_module(f"integrations.cli.{module}"), name)(args, load)

    return run


def positive(value: str) -> int:
    """An argparse type: a whole number of at least 1 (a usage error at once, before any model loads)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embedkit", description="Sentence embeddings and semantic search.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-m", "--model", default=DEFAULT_MODEL, help="model name or folder")
    common.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: the best there is)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    common.add_argument("-v", "--verbose", action="store_true", help="show the model's loading progress too")
    sub = parser.add_subparsers(dest="command", required=True)

    enc = sub.add_parser("encode", parents=[common], help="embed the lines or records of a file into a .npy file")
    enc.add_argument(
        "input",
        nargs="*",
        help="a text file (a text per line), .jsonl or .csv, or - for stdin; with --ray: files, folders, globs",
    )
    enc.add_argument(
        "-o",
        "--output",
        default="embeddings.npy",
        help="the .npy file; with --ray a Parquet folder or a PostgreSQL URL",
    )
    enc.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="encode on a Ray cluster (ADDRESS, e.g. ray://head:10001; default: a local one)",
    )
    enc.add_argument("--field", default="text", help="the JSONL field or CSV column that holds the text")
    enc.add_argument("--role", choices=["query", "document", "none"], default="none", help="apply a prompt")
    enc.add_argument("--batch-size", type=int, default=32, help="texts per model batch (default 32)")
    enc.add_argument("--normalize", action="store_true", help="L2-normalize the embeddings")
    enc.add_argument(
        "--precision", default="float32", choices=PRECISIONS, help="int8/uint8: a byte a dimension; binary: a bit"
    )
    enc.add_argument("--truncate-dim", type=int, default=None, help="keep the first N dimensions (Matryoshka)")
    enc.add_argument("--resume", action="store_true", help="continue an interrupted run into the same output file")
    enc.add_argument(
        "--chunk-tokens",
        type=lambda v: None if v == "auto" else int(v),
        default=0,
        help="with --ray: a row per chunk of at most N tokens ('auto': the model's limit; default 0: a row per text)",
    )
    enc.add_argument("--chunk-overlap", type=int, default=32, help="tokens that consecutive chunks share, at most")
    enc.set_defaults(func=cmd_encode)

    add = sub.add_parser(
        "add",
        parents=[common],
        help="add .txt, .md, .jsonl and .csv files (or folders, or globs) to an index",
        description="Adding a folder again makes the index hold what the folder holds now (see docs/cli.md).",
    )
    add.add_argument("db", help=DB_HELP + "; created if missing")
    add.add_argument("paths", nargs="+", metavar="PATH", help="files, folders (searched recursively) or globs")
    add.add_argument(
        "--text-field",
        "--field",
        dest="field",
        action="append",
        metavar="[PATTERN=]NAME",
        help="the JSONL field or CSV column of the text (default: text); PATTERN=NAME for the files whose path "
        "in the folder, or name, matches the glob PATTERN (repeat it; the last match wins)",
    )
    add.add_argument(
        "--id-field",
        action="append",
        metavar="[PATTERN=]NAME",
        help="the JSONL field or CSV column of a record's own id (default: id), per file as --text-field; the "
        "document id is FILE#ID, so files may share ids",
    )
    add.add_argument(
        "--unit",
        choices=["file", "paragraph", "line"],
        default="file",
        help=".txt and .md: a document per file (chunked by the index; the default), per paragraph or per line",
    )
    add.add_argument("--encoding", default="utf-8", help="the files' encoding (default: utf-8; a BOM is dropped)")
    add.add_argument(
        "--strict", action="store_true", help="fail on a file that does not decode, instead of skipping it"
    )
    add.add_argument(
        "--no-prune", action="store_true", help="keep the documents of files that are gone from a folder given again"
    )
    add.add_argument(
        "--allow-empty",
        action="store_true",
        help="a folder that holds no files removes its stored documents (else they are kept, and the exit status is 6)",
    )
    add.add_argument(
        "--batch-size", type=positive, default=256, help="chunks per transaction at most (each is about 2 s of work)"
    )
    add.add_argument(
        "--chunk-tokens",
        type=int,
        default=None,
        help="split texts longer than this many tokens (default: the model's limit; 0: off)",
    )
    add.add_argument("--chunk-overlap", type=int, default=32, help="tokens that consecutive chunks share, at most")
    add.add_argument(
        "--sparse-model",
        metavar="MODEL",
        help="a new index also keeps this SparseEncoder's vectors (a SPLADE folder or Hub name), for --mode "
        "sparse; an index that keeps them loads its own",
    )
    add.set_defaults(func=store_command("cmd_add"))

    search = sub.add_parser("search", parents=[common], help="search an index")
    search.add_argument("db", help=DB_HELP)
    search.add_argument("query", help="what to search for, in words")
    search.add_argument("-k", type=positive, default=5, help="how many documents to show (default 5)")
    search.add_argument("--filter", help='a JSON filter, e.g. \'{"source": "docs/a.md", "line": {"$lte": 40}}\'')
    search.add_argument(
        "--mode",
        choices=["vector", "keyword", "sparse", "hybrid"],
        default="vector",
        help="sparse: an index added with --sparse-model; hybrid fuses every leg the index has",
    )
    search.add_argument(
        "--json", action="store_true", help="print JSON: each hit's passage, highlights, headings, source, metadata"
    )
    search.add_argument("--full", action="store_true", help="show each hit's whole document too")
    search.add_argument("--rerank", metavar="MODEL", help="rerank with this CrossEncoder (a folder or Hub name)")
    search.add_argument(
        "--rerank-candidates", type=positive, default=50, metavar="N", help="documents the reranker sees"
    )
    search.set_defaults(func=store_command("cmd_search"))

    info = sub.add_parser("info", parents=[common], help="what an index holds: count, model, size, sources")
    info.add_argument("db", help=DB_HELP)
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.add_argument("--sources", type=positive, default=10, metavar="N", help="list the N largest sources")
    info.set_defaults(func=store_command("cmd_info", "inspection"))
    listing = sub.add_parser("list", parents=[common], help="the ids of an index, in id order, a page at a time")
    listing.add_argument("db", help=DB_HELP)
    listing.add_argument("--filter", help="a JSON filter (as search's)")
    listing.add_argument("--limit", type=positive, default=100, help="ids a page (default 100)")
    listing.add_argument("--offset", type=int, default=0, help="ids to skip first")
    listing.add_argument("--json", action="store_true", help="one JSON object (id, metadata) per line")
    listing.set_defaults(func=store_command("cmd_list", "inspection"))
    get = sub.add_parser("get", parents=[common], help="stored documents by id, as JSON lines")
    get.add_argument("db", help=DB_HELP)
    get.add_argument("ids", nargs="+", metavar="ID", help="document ids, as list prints them")
    get.set_defaults(func=store_command("cmd_get", "inspection"))
    delete = sub.add_parser("delete", parents=[common], help="delete documents by id and/or --filter")
    delete.add_argument("db", help=DB_HELP)
    delete.add_argument("ids", nargs="*", metavar="ID", help="document ids (with --filter: those of them it matches)")
    delete.add_argument("--filter", help="a JSON filter (as search's)")
    delete.set_defaults(func=store_command("cmd_delete", "inspection"))
    prune = sub.add_parser("prune", parents=[common], help="delete the documents of files that no longer exist")
    prune.add_argument("db", help=DB_HELP)
    prune.set_defaults(func=store_command("cmd_prune", "inspection"))

    serving = argparse.ArgumentParser(add_help=False)
    serving.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: this machine only)")
    serving.add_argument("--port", type=int, default=8000, help="the port to listen on (default 8000)")
    serving.add_argument("--api-key", default=None, help="require Authorization: Bearer KEY (or set EMBEDKIT_API_KEY)")
    serving.add_argument(
        "--api-key-file",
        metavar="PATH",
        help="read the key from this file, which keeps it out of ps (or set EMBEDKIT_API_KEY_FILE)",
    )
    serving.add_argument(
        "--served-model-name",
        action="append",
        default=[],
        metavar="NAME",
        help="a name the model answers to in requests' model field and /v1/models (repeatable)",
    )
    serving.add_argument(
        "--backend",
        choices=["torch", "onnx"],
        default="torch",
        help="onnx: the model's int8 ONNX Runtime engine, embedkit's fastest on CPU (the onnx extra)",
    )
    serving.add_argument(
        "--max-client-batch-size", type=positive, default=2048, metavar="N", help="texts per request (default 2048)"
    )
    serving.add_argument(
        "--max-body-bytes", type=positive, default=16 * 2**20, metavar="N", help="request body size (default 16 MiB)"
    )
    serving.add_argument(
        "--max-batch-tokens",
        type=int,
        default=16384,
        help="tokens per model batch across concurrent requests (0: no cross-request batching)",
    )
    serving.add_argument("--max-wait-ms", type=float, default=2.0, help="how long a batch waits to fill up")
    serving.add_argument("--max-queue", type=int, default=1024, help="requests that may wait; more get 503")
    serving.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="after SIGTERM, requests whose work has not started by then get 503 (default 30)",
    )
    serving.add_argument(
        "--auto-truncate",
        action="store_true",
        help="cut over-long inputs instead of refusing them",
    )
    serving.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN", help="allow this origin")

    srv = sub.add_parser("serve", parents=[common, serving], help="serve embeddings, reranking and search over HTTP")
    srv.add_argument("--reranker", metavar="MODEL", help="a CrossEncoder for /v1/rerank and reranked searches")
    srv.add_argument(
        "--sparse-model", metavar="MODEL", help="a SparseEncoder for /embed_sparse (indexes load the one they record)"
    )
    srv.add_argument(
        "--index", action="append", default=[], metavar="NAME=TARGET", help="serve an index (created if missing)"
    )
    srv.set_defaults(func=store_command("cmd_serve"))

    demo = sub.add_parser(
        "demo", parents=[common, serving], help="index the bundled example corpus into SQLite and search it"
    )
    demo.add_argument("--db", default="sqlite:///embedkit-demo.db", help="the demo's index (default: %(default)s)")
    demo.add_argument("--serve", action="store_true", help="then serve it, with the search page at /")
    demo.set_defaults(func=store_command("cmd_demo"))
    return parser


def exit_code(exc: BaseException) -> int:
    """The exit status for an error (docs/cli.md): 3 no such index, 4 a damaged file or not an index, 5 the
    database or its disk failed, 6 a partial sync (what could not be read was kept as it was), 1 anything
    else (bad input, a missing model); argparse's usage errors are 2."""
    from integrations.cli.readers import PartialSync
    from integrations.errors import CorruptIndexError, IndexNotFoundError, SearchError, StorageError

    if isinstance(exc, PartialSync):
        return 6
    if isinstance(exc, IndexNotFoundError):
        return 3
    if isinstance(exc, CorruptIndexError):
        return 4
    return 5 if isinstance(exc, (SearchError, StorageError)) else 1


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    backend = getattr(args, "backend", "torch")
    load = functools.cache(functools.partial(load_model, args.model, args.device, args.verbose, backend))  # once
    try:
        args.func(args, load)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except (ValueError, TypeError, KeyError, OSError, ImportError, RuntimeError) as exc:  # PartialSync too
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"embedkit {args.command}: {message}", file=sys.stderr)
        raise SystemExit(exit_code(exc)) from None


if __name__ == "__main__":
    main()
