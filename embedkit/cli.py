"""The ``embedkit`` command."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def read_texts(path: str, field: str = "text") -> list[str]:
    """Texts from a file: JSONL (one object per line, ``field`` holds the text) or plain lines."""
    stream = sys.stdin if path == "-" else open(path, encoding="utf8")
    with stream:
        lines = [line.rstrip("\n") for line in stream]
    if not path.endswith((".jsonl", ".ndjson")):
        return lines
    texts = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{path}:{n}: invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get(field), str):
            raise SystemExit(f"{path}:{n}: expected an object with a string {field!r} field")
        texts.append(record[field])
    return texts


def cmd_encode(args: argparse.Namespace) -> None:
    from .model import SentenceTransformer

    texts = read_texts(args.input, args.field)
    if args.quiet:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    model = SentenceTransformer(args.model, device=args.device)
    encode = {"query": model.encode_query, "document": model.encode_document}.get(args.role, model.encode)
    emb = encode(
        texts,
        batch_size=args.batch_size,
        show_progress_bar=not args.quiet,
        normalize_embeddings=args.normalize,
        precision=args.precision,
        truncate_dim=args.truncate_dim,
    )
    np.save(args.output, emb)
    if not args.quiet:
        print(f"wrote {emb.shape[0]} embeddings of shape {emb.shape[1:]} ({emb.dtype}) to {args.output}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embedkit", description="Sentence embeddings and semantic search.")
    sub = parser.add_subparsers(dest="command", required=True)
    enc = sub.add_parser("encode", help="embed the lines or JSONL records of a file into a .npy file")
    enc.add_argument("input", help="a text file (one text per line), a .jsonl file, or - for stdin")
    enc.add_argument("-o", "--output", default="embeddings.npy", help="the .npy file to write")
    enc.add_argument("-m", "--model", default=DEFAULT_MODEL, help="model name or folder")
    enc.add_argument("--field", default="text", help="the JSONL field that holds the text")
    enc.add_argument("--role", choices=["query", "document", "none"], default="none",
                     help="apply the model's query or document prompt")
    enc.add_argument("--batch-size", type=int, default=32)
    enc.add_argument("--normalize", action="store_true", help="L2-normalize the embeddings")
    enc.add_argument("--precision", default="float32", choices=["float32", "int8", "uint8", "binary", "ubinary"])
    enc.add_argument("--truncate-dim", type=int, default=None)
    enc.add_argument("--device", default=None)
    enc.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    enc.set_defaults(func=cmd_encode)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, TypeError, OSError) as exc:
        raise SystemExit(f"embedkit {args.command}: {exc}") from None


if __name__ == "__main__":
    main()
