"""SciFact documents embedded through Ray Data (``embedkit.distributed.embed_dataset``) with 1 and 2 CPU
actors, against single-process ``encode_document`` on the same cores, in one run.

    python benchmarks/ray_scale.py --data ../shared/data [--limit 2000] [--model all-MiniLM-L6-v2]

Prints rows/s for each, Ray's overhead as a ratio of wall time (actor start and model load included), and
the largest difference from single-process embeddings. On a GPU cluster, pass ``--gpus`` to use GPU actors.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from data import scifact  # noqa: E402

from embedkit import SentenceTransformer  # noqa: E402
from embedkit.distributed import embed_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--limit", type=int, default=2000, help="documents to embed")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--gpus", action="store_true", help="GPU actors (one per GPU)")
    args = parser.parse_args()

    import pyarrow as pa
    import ray

    corpus = scifact(args.data)[0]
    ids = list(corpus)[: args.limit]
    texts = [corpus[i] for i in ids]
    model = SentenceTransformer(args.model)
    model.encode_document(texts[:64], batch_size=args.batch_size)  # warm up
    start = time.perf_counter()
    expected = model.encode_document(texts, batch_size=args.batch_size)
    single = time.perf_counter() - start
    print(f"{len(texts)} SciFact documents, {os.cpu_count()} cores, {args.model}")
    print("| run | seconds | rows/s | vs single process | max abs diff |")
    print("|---|---|---|---|---|")
    print(f"| single process encode | {single:.1f} | {len(texts) / single:.0f} | 1.00x | 0 |", flush=True)

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    for actors in (1, 2):
        ds = ray.data.from_items([{"id": i, "text": t} for i, t in zip(ids, texts)]).repartition(8 * actors)
        start = time.perf_counter()
        out = embed_dataset(
            ds,
            args.model,
            role="document",
            batch_size=args.batch_size,
            concurrency=actors,
            num_gpus=None if args.gpus else 0,
        ).materialize()
        seconds = time.perf_counter() - start
        table = pa.concat_tables(ray.get(out.to_arrow_refs()))
        got = dict(zip(table.column("id").to_pylist(), table.column("embedding").to_pylist()))
        diff = float(np.abs(np.asarray([got[i] for i in ids]) - expected).max())
        cells = [
            f"Ray Data, {actors} CPU actor{'s' if actors > 1 else ''}",
            f"{seconds:.1f}",
            f"{len(texts) / seconds:.0f}",
        ]
        print("| " + " | ".join(cells + [f"{seconds / single:.2f}x", f"{diff:.1e}"]) + " |", flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
