"""Batching across requests, a full queue, a client that goes away, SIGTERM and kill -9, and a short load
run: every request answered exactly once, with its own rows. No timing is asserted."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import threading
import time

import httpx
import numpy as np
import pytest
from serving import KEY, running, spawn_server
from store_workers import HashEncoder

from integrations import open_index
from integrations.server.batcher import Batcher
from integrations.targets import recorded_model

AUTH = {"Authorization": f"Bearer {KEY}"}
SENTENCES = [f"sentence number {i} about {'tea' if i % 2 else 'rivers'}" for i in range(64)]


def metric(client: httpx.Client, url: str, name: str) -> float:
    for line in client.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


async def fire(url: str, bodies: list[dict], path: str = "/v1/embeddings") -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=120, headers=AUTH, limits=httpx.Limits(max_connections=100)) as c:
        return await asyncio.gather(*(c.post(url + path, json=b) for b in bodies))


@pytest.mark.parametrize("max_batch_tokens", [16384, 0])
def test_concurrent_requests_share_batches_and_get_their_own_rows(make_service, tiny_model, client, max_batch_tokens):
    with running(make_service(max_batch_tokens=max_batch_tokens, max_wait_ms=20)) as url:
        answers = asyncio.run(fire(url, [{"input": s} for s in SENTENCES]))
        assert [a.status_code for a in answers] == [200] * len(SENTENCES)
        rows = [a.json()["data"][0]["embedding"] for a in answers]
        np.testing.assert_allclose(rows, tiny_model.encode(SENTENCES), atol=1e-6)
        batches = metric(client, url, "embedkit_batch_texts_count")
        texts = metric(client, url, "embedkit_batch_texts_sum")
        assert texts == len(SENTENCES)
        if max_batch_tokens:
            assert batches < len(SENTENCES) / 2  # many requests per forward pass
        else:
            assert batches == len(SENTENCES)  # one request per forward pass


def test_a_full_queue_answers_503_and_the_server_recovers(make_service, tiny_model, client):
    service = make_service(max_queue=2, max_batch_tokens=0)
    fast = service.batcher.encode

    def slow(options, items):  # a model busy enough that the queue fills, whatever the machine's speed
        time.sleep(0.05)
        return fast(options, items)

    service.batcher.encode = slow
    with running(service) as url:
        answers = asyncio.run(fire(url, [{"input": [s] * 8} for s in SENTENCES]))
        codes = [a.status_code for a in answers]
        assert set(codes) == {200, 503} and codes.count(503) > 0
        busy = next(a for a in answers if a.status_code == 503)
        assert busy.headers["Retry-After"] == "1" and busy.json()["error"]["type"] == "server_busy"
        for s, a in zip(SENTENCES, answers):
            if a.status_code == 200:
                np.testing.assert_allclose(a.json()["data"][0]["embedding"], tiny_model.encode(s), atol=1e-6)
        again = client.post(url + "/v1/embeddings", json={"input": "after the rush"})
        assert again.status_code == 200


def test_a_request_whose_client_left_is_never_encoded():
    encoded = []

    def encode(options, items):
        time.sleep(0.2)
        encoded.extend(items)
        return np.zeros((len(items), 2), np.float32)

    async def run():
        executor = concurrent.futures.ThreadPoolExecutor(1)
        batcher = Batcher(encode, executor, max_batch_tokens=0, max_wait_ms=0, max_queue=10)
        batcher.start()
        first = asyncio.ensure_future(batcher.embed((), ["first"], 1))
        await asyncio.sleep(0.05)  # the model is busy with the first
        left = asyncio.ensure_future(batcher.embed((), ["left"], 1))
        stays = asyncio.ensure_future(batcher.embed((), ["stays"], 1))
        await asyncio.sleep(0.01)
        left.cancel()  # what the server does when the client disconnects
        assert (await first).shape == (1, 2) and (await stays).shape == (1, 2)
        await batcher.stop()
        executor.shutdown()

    asyncio.run(run())
    assert encoded == ["first", "stays"]


@pytest.mark.slow
def test_a_short_load_run_answers_every_request_once(make_service, tiny_model):
    """16 clients for 2 s, single sentences and 8-text requests mixed (benchmarks/serve_load.py is the long one)."""
    with running(make_service()) as url:
        results: list[tuple[list[str], httpx.Response]] = []

        async def one_client(n: int, stop: float):
            async with httpx.AsyncClient(timeout=60, headers=AUTH) as c:
                i = 0
                while time.monotonic() < stop:
                    texts = [f"client {n} request {i} text {j}" for j in range(1 if n % 2 else 8)]
                    results.append((texts, await c.post(url + "/v1/embeddings", json={"input": texts})))
                    i += 1

        async def main():
            stop = time.monotonic() + 2
            await asyncio.gather(*(one_client(n, stop) for n in range(16)))

        asyncio.run(main())
        assert results and all(r.status_code == 200 for _, r in results)
        sent = [t for texts, _ in results for t in texts]
        assert len(sent) == len(set(sent))  # each request once
        for texts, answer in results[:: max(1, len(results) // 40)]:
            rows = [d["embedding"] for d in answer.json()["data"]]
            np.testing.assert_allclose(rows, tiny_model.encode(texts), atol=1e-6)


def wait_for(url: str, condition) -> dict[str, float]:
    """The server's metrics (``{"name{labels}": value}``) once ``condition`` holds of them."""
    deadline = time.monotonic() + 120
    while True:
        lines = httpx.get(url + "/metrics", timeout=10).text.splitlines()
        metrics = {k: float(v) for k, _, v in (line.rpartition(" ") for line in lines if not line.startswith("#"))}
        if condition(metrics):
            return metrics
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


@pytest.mark.slow
def test_sigterm_drains_the_requests_in_flight(prompt_model_dir):
    with spawn_server(["-m", prompt_model_dir]) as (process, url):
        big = {"input": [f"text {i} " * 20 for i in range(2000)]}
        answer = {}
        sender = threading.Thread(
            target=lambda: answer.update(r=httpx.post(url + "/v1/embeddings", json=big, timeout=120))
        )
        sender.start()
        wait_for(url, lambda m: m.get("embedkit_batch_texts_count", 0) >= 1)  # the request is in the model
        process.send_signal(signal.SIGTERM)
        sender.join(120)
        assert answer["r"].status_code == 200 and len(answer["r"].json()["data"]) == 2000
        assert process.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained


@pytest.mark.slow
def test_sigterm_during_four_large_adds_answers_each_and_exits(minilm_path, tmp_path):
    """Four adds of 2,048 documents into one index: the first runs, three wait in its lane, and reads of
    the index are answered meanwhile. SIGTERM with
    --drain-timeout 1: the one running finishes (200, every document there), the ones that had not started
    when the deadline passed get 503 with nothing of theirs written, and the process exits; no 500."""
    target = f"sqlite:///{tmp_path}/docs.db"
    bodies = [
        {
            "documents": [
                {"id": f"add{a}-{i}", "text": f"document {i} of add {a} about tea and rivers " * 4} for i in range(2048)
            ]
        }
        for a in range(4)
    ]
    with spawn_server(["-m", minilm_path, "--index", f"docs={target}", "--drain-timeout", "1"]) as (process, url):
        answers = {}

        def send(a: int) -> None:
            answers[a] = httpx.post(url + "/v1/indexes/docs/add", json=bodies[a], timeout=600)

        senders = [threading.Thread(target=send, args=(a,)) for a in range(4)]
        for sender in senders:
            sender.start()
        running, waiting = 'embedkit_work{lane="docs",state="running"}', 'embedkit_work{lane="docs",state="waiting"}'
        wait_for(url, lambda m: m.get(running) == 1 and m.get(waiting) == 3)
        reads = [  # reads need no write to finish: answered while the first add still runs
            httpx.post(url + "/v1/indexes/docs/search", json={"query": "tea", "mode": "keyword"}, timeout=60),
            httpx.post(url + "/v1/indexes/docs/get", json={"limit": 5}, timeout=60),
            httpx.get(url + "/v1/indexes/docs", timeout=60),
        ]
        assert [r.status_code for r in reads] == [200, 200, 200] and reads[2].json()["count"] == 0
        assert wait_for(url, lambda m: True)[waiting] == 3  # and the adds have not moved meanwhile
        process.send_signal(signal.SIGTERM)
        for sender in senders:
            sender.join(600)
        assert process.wait(600) in (0, -signal.SIGTERM)
    codes = sorted(answer.status_code for answer in answers.values())
    assert codes == [200, 503, 503, 503], [a.text[:200] for a in answers.values()]
    index = open_index(target, recorded_model(target), create=False)  # the model it records, standing in
    for a, answer in answers.items():
        ids = [d["id"] for d in bodies[a]["documents"]]
        present = {r.id for r in index.get(ids)}
        if answer.status_code == 200:
            assert present == set(ids) and answer.json()["ids"] == ids
        else:
            assert present == set() and "shutting down and did not run this request" in answer.text
    assert len(index) == 2048


@pytest.mark.slow
def test_kill_9_loses_no_acknowledged_add(prompt_model_dir, tmp_path):
    """A stream of /add calls; the server is killed with SIGKILL in the middle of it. Every add that was
    answered 200 is in the index afterwards."""
    target = f"sqlite:///{tmp_path}/docs.db"
    acknowledged: list[str] = []

    def stream(url: str) -> None:
        with httpx.Client(timeout=30) as c, contextlib.suppress(httpx.HTTPError):  # it dies under us
            for i in range(10_000):
                ids = [f"doc-{i}-{j}" for j in range(5)]
                body = {"documents": [{"id": d, "text": f"document {d}", "metadata": {"n": i}} for d in ids]}
                answer = c.post(url + "/v1/indexes/docs/add", json=body)
                assert answer.status_code == 200
                acknowledged.extend(answer.json()["ids"])

    with spawn_server(["-m", prompt_model_dir, "--index", f"docs={target}"]) as (process, url):
        writer = threading.Thread(target=stream, args=(url,))
        writer.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        process.kill()  # SIGKILL, mid-stream
        writer.join(60)
    assert len(acknowledged) >= 100
    index = open_index(target, HashEncoder(), create=False)
    assert {r.id for r in index.get(acknowledged)} == set(acknowledged)
    assert index.get(acknowledged[:1])[0].metadata == {"n": 0}


@pytest.mark.slow
def test_the_demo_serves_its_corpus(prompt_model_dir, tmp_path):
    db = f"sqlite:///{tmp_path}/demo.db"
    with spawn_server(
        ["-m", prompt_model_dir, "--db", db, "--serve"], command="demo", env={"EMBEDKIT_API_KEY": KEY}
    ) as (_, url):
        assert httpx.get(url + "/v1/indexes").status_code == 401  # the key comes from the environment
        (demo,) = httpx.get(url + "/v1/indexes", headers=AUTH).json()["data"]
        assert demo["name"] == "demo" and demo["count"] > 10
        hits = httpx.post(url + "/v1/indexes/demo/search", json={"query": "tea", "k": 2}, headers=AUTH).json()["data"]
        assert len(hits) == 2
