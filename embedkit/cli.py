"""The ``embedkit`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def iter_records(path: str, field: str = "text"):
    """Records ``{"id", "text", "metadata"}`` streamed from a file: JSONL (``field`` holds the text; ``id``
    and ``metadata`` are optional) or plain lines (ids are ``FILE:LINE``, so adding a file again upserts)."""
    name = os.path.basename(path)
    jsonl = path.endswith((".jsonl", ".ndjson"))
    stream = sys.stdin if path == "-" else open(path, encoding="utf8")
    with stream:
        for n, line in enumerate(stream, 1):
            line = line.rstrip("\n")
            if not jsonl:
                yield {"id": f"{name}:{n}", "text": line, "metadata": {}}
            elif line.strip():
                yield _parse_record(line, path, n, field, name)


def _parse_record(line: str, path: str, n: int, field: str, name: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{path}:{n}: invalid JSON ({exc.msg})") from None
    if not isinstance(record, dict) or not isinstance(record.get(field), str):
        raise SystemExit(f"{path}:{n}: expected an object with a string {field!r} field")
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise SystemExit(f"{path}:{n}: 'metadata' must be an object")
    return {"id": str(record.get("id", f"{name}:{n}")), "text": record[field], "metadata": metadata}


def read_records(path: str, field: str = "text") -> list[dict]:
    return list(iter_records(path, field))


def load_model(name: str, device: str | None = None, quiet: bool = False):
    from .model import SentenceTransformer

    if quiet:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    return SentenceTransformer(name, device=device)


def cmd_encode(args: argparse.Namespace) -> None:
    model = load_model(args.model, args.device, args.quiet)
    prompt = {"query": model.query_prompt, "document": model.document_prompt}.get(args.role)
    # A first pass counts the texts for the progress bar and finds a bad record before any encoding.
    total = None if args.input == "-" else sum(1 for _ in iter_records(args.input, args.field))
    emb = model.encode_to_file(
        (r["text"] for r in iter_records(args.input, args.field)),
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embedkit", description="Sentence embeddings and semantic search.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-m", "--model", default=DEFAULT_MODEL, help="model name or folder")
    common.add_argument("--device", default=None)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    enc = sub.add_parser("encode", parents=[common], help="embed the lines or JSONL records of a file into a .npy file")
    enc.add_argument("input", help="a text file (one text per line), a .jsonl file, or - for stdin")
    enc.add_argument("-o", "--output", default="embeddings.npy", help="the .npy file to write")
    enc.add_argument("--field", default="text", help="the JSONL field that holds the text")
    enc.add_argument(
        "--role",
        choices=["query", "document", "none"],
        default="none",
        help="apply the model's query or document prompt",
    )
    enc.add_argument("--batch-size", type=int, default=32)
    enc.add_argument("--normalize", action="store_true", help="L2-normalize the embeddings")
    enc.add_argument("--precision", default="float32", choices=["float32", "int8", "uint8", "binary", "ubinary"])
    enc.add_argument("--truncate-dim", type=int, default=None)
    enc.add_argument("--resume", action="store_true", help="continue an interrupted run into the same output file")
    enc.set_defaults(func=cmd_encode)
    from integrations.commands import register  # faiss-cpu and SQLAlchemy are core dependencies

    register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, TypeError, OSError) as exc:
        raise SystemExit(f"embedkit {args.command}: {exc}") from None


if __name__ == "__main__":
    main()
