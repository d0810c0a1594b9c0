"""Large ``$or`` filters: cost against the number of equality leaves, on FaissIndex and SQLIndex (SQLite).

50,000 documents with metadata ``{"i": i, "tag": "t{i % 1000}"}`` (random 384-d vectors); filters are an
``$or`` of n equality leaves on ``i`` (every other one matching) and the same on ``tag``. Printed per store
and n: the wall time of one filtered search (k = 10, the filter's first use, so nothing is cached), and
ratios against 250 leaves (linear growth gives n / 250) and against numpy evaluating the same filter over
the same metadata held in arrays (``np.isin``), the floor a filter evaluator cannot beat by much.

    python benchmarks/filter_scale.py [--docs 50000] [--leaves 250 1000 5000 20000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from store_scale import DIM, VectorsOnly  # noqa: E402

from integrations import FaissIndex, SQLIndex  # noqa: E402


def filters(n: int) -> dict[str, tuple[dict, np.ndarray]]:
    """name -> (filter, the values of its leaves)."""
    ints = np.arange(0, 2 * n, 2)
    tags = [f"t{v}" for v in range(0, 2 * n, 2)]
    return {
        "int": ({"$or": [{"i": int(v)} for v in ints]}, ints),
        "str": ({"$or": [{"tag": t} for t in tags]}, np.array(tags)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--leaves", type=int, nargs="+", default=[250, 1000, 5000, 20000])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.docs, DIM)).astype(np.float32)
    ids = [f"d{i}" for i in range(args.docs)]
    metadatas = [{"i": i, "tag": f"t{i % 1000}"} for i in range(args.docs)]
    columns = {"int": np.arange(args.docs), "str": np.array([m["tag"] for m in metadatas])}
    folder = tempfile.mkdtemp()
    stores = {
        "FaissIndex": FaissIndex(VectorsOnly(), path=os.path.join(folder, "f"), kind="hnsw"),
        "SQLIndex": SQLIndex(VectorsOnly(), f"sqlite:///{folder}/s.db"),
    }
    for store in stores.values():
        for start in range(0, args.docs, 10_000):
            end = start + 10_000
            store.add_embeddings(vectors[start:end], ids[start:end], metadatas[start:end], ids[start:end])
    print(f"{args.docs} documents; one filtered search, first use of each filter (seconds)")
    header = ("store", "leaves", "field", "hits", "time", "vs 250", "linear", "vs numpy")
    print("{:<11} {:>7} {:>5} {:>6} {:>8} {:>8} {:>7} {:>9}".format(*header))
    for name, store in stores.items():
        store.search_by_vector(vectors[0], k=10)  # loads what a store keeps in memory, so filters alone are timed
        first = {}
        for n in args.leaves:
            for field, (flt, values) in filters(n).items():
                start = time.perf_counter()
                hits = store.search_by_vector(vectors[1], k=10, filter=flt)
                took = time.perf_counter() - start
                start = time.perf_counter()
                np.flatnonzero(np.isin(columns[field], values))
                floor = time.perf_counter() - start
                first.setdefault(field, (n, took))
                n0, t0 = first[field]
                print(
                    f"{name:<11} {n:>7} {field:>5} {len(hits):>6} {took:>8.3f} {took / t0:>7.1f}x "
                    f"{n / n0:>6.0f}x {took / floor:>8.0f}x"
                )
    for store in stores.values():
        store.close()


if __name__ == "__main__":
    main()
