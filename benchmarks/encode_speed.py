"""Encoding throughput of embedkit against sentence-transformers, in one process, on the same texts.

    python benchmarks/encode_speed.py --data ../shared/data                      # CPU float32
    python benchmarks/encode_speed.py --data ../shared/data --backend onnx       # CPU int8 (ONNX Runtime)
    python benchmarks/encode_speed.py --data ../shared/data --device cuda --dtype float16

The GPU check of the Ray issue (target: SciFact documents at batch 512 at least 6x sentence-transformers,
about 3 M tok/s on an H100, with a minimum cosine of 0.999 against float32):

    python benchmarks/encode_speed.py --data ../shared/data --device cuda --dtype float16 --batch-size 512 --docs 0

Texts: SciFact documents (title + text) and STS Benchmark sentences. The two libraries alternate, each
run is repeated, and the best time of each counts. Throughput is in real (non-padding) tokens per
second, strings in, numpy out. Agreement is checked against sentence-transformers at the same dtype
(max abs difference) and against float32 (minimum cosine). Last, tokenization alone over every SciFact
document, against ``tokenizer(texts, truncation=True, max_length=...)``.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from data import scifact, sts_test  # noqa: E402

from embedkit import SentenceTransformer  # noqa: E402
from embedkit.hub import resolve_model_path  # noqa: E402

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def real_tokens(model: SentenceTransformer, texts: list[str]) -> int:
    features = model.transformer.tokenize(texts)
    return sum(len(ids) for ids in features["input_ids"])


def timed(fn, texts):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn(texts)
    return time.perf_counter() - start, out


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.min(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-batch-tokens", type=int, default=None, help="embedkit's token budget per batch")
    parser.add_argument("--docs", type=int, default=400, help="SciFact documents to encode (0: all 5,183)")
    parser.add_argument("--sentences", type=int, default=2000, help="STS sentences to encode (0: all)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("embedkit").setLevel(logging.ERROR)

    from sentence_transformers import SentenceTransformer as Reference

    path = resolve_model_path(args.model)
    kwargs = {"model_kwargs": {"dtype": DTYPES[args.dtype]}} if args.dtype != "float32" else {}
    ours = SentenceTransformer(path, device=args.device, backend=args.backend, **kwargs)
    reference = Reference(path, device=args.device, **kwargs)
    reference_fp32 = None if args.dtype == "float32" else Reference(path, device=args.device)

    corpus, _, _ = scifact(args.data)
    s1, s2, _ = sts_test(args.data)
    docs = list(corpus.values())[: args.docs or None]
    sentences = list(dict.fromkeys(s1 + s2))[: args.sentences or None]
    encode_ref = lambda t: reference.encode(t, batch_size=args.batch_size)  # noqa: E731
    encode_ours = lambda t: ours.encode(t, batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens)  # noqa: E731

    weights = "int8" if args.backend == "onnx" else args.dtype
    label = f"{args.backend}/{weights} on {args.device} ({torch.get_num_threads()} threads)"
    print(f"embedkit {label} vs sentence-transformers {args.dtype}; batch size {args.batch_size}\n")
    print(
        "| texts | n | tokens | sentence-transformers tok/s | embedkit tok/s | ratio | max abs diff | min cos vs fp32 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, texts in (("SciFact docs", docs), ("STS sentences", sentences)):
        tokens = real_tokens(ours, texts)
        encode_ref(texts[:64]), encode_ours(texts[:64])  # warm-up
        best_ref = best_ours = float("inf")
        for _ in range(args.repeats):  # alternate, so drift on a shared machine hits both
            t, ref = timed(encode_ref, texts)
            best_ref = min(best_ref, t)
            t, out = timed(encode_ours, texts)
            best_ours = min(best_ours, t)
        diff = float(np.abs(out.astype(np.float64) - ref.astype(np.float64)).max())
        full = ref if reference_fp32 is None else reference_fp32.encode(texts, batch_size=args.batch_size)
        print(
            f"| {name} | {len(texts)} | {tokens} | {tokens / best_ref:,.0f} | {tokens / best_ours:,.0f} "
            f"| {best_ref / best_ours:.2f}x | {diff:.2e} | {cosine_min(out, full):.5f} |",
            flush=True,
        )
    tokenization(ours, list(corpus.values()), args.repeats)


def tokenization(model: SentenceTransformer, texts: list[str], repeats: int) -> None:
    """Tokenization alone, on every SciFact document: embedkit (``embedkit._encoding.tokenizing``) against
    ``tokenizer(texts, truncation=True, max_length=...)`` on the same cores, with identical ids."""
    length = model.max_seq_length
    hf = lambda: model.tokenizer(texts, truncation=True, max_length=length)["input_ids"]  # noqa: E731
    ours = lambda: model.transformer.tokenize(texts)["input_ids"]  # noqa: E731
    assert ours() == hf(), "the ids differ"
    best_hf = best_ours = float("inf")
    for _ in range(repeats):
        best_hf = min(best_hf, timed(lambda _: hf(), None)[0])
        best_ours = min(best_ours, timed(lambda _: ours(), None)[0])
    print(f"\nTokenization of {len(texts)} SciFact documents, truncated at {length} tokens, identical ids:")
    print(f"tokenizer(..., truncation=True) {best_hf:.3f} s; embedkit {best_ours:.3f} s; {best_hf / best_ours:.2f}x")


if __name__ == "__main__":
    main()
