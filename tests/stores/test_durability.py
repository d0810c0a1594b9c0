"""Every backend under several processes and under kill -9: nothing committed is lost, every reopen works."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time

import numpy as np
import pytest
from store_workers import DIM, HashEncoder, crasher, manifest, open_target, reader, segment_files, text_of, writer

STORES = ["faiss-flat-float32", "faiss-hnsw-float32", "faiss-ivf-int8", "sqlite", "postgres"]


def context():
    """Children forked from a server that imported the workers once: real processes that start fast."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["store_workers"])
    return ctx


@pytest.fixture
def target(backend):
    """(target string, index options) of the configuration."""
    return backend.target, backend.options


def check_consistent(index) -> set[str]:
    """Every stored document is found by its own vector with its own text; returns the stored ids."""
    n = len(index)
    if n == 0:
        return set()
    hits = index.search("anything", k=n)
    ids = {h.id for h in hits}
    assert len(hits) == n == len(ids)
    for hit in hits:
        assert hit.text == text_of(hit.id)
    sample = random.Random(0).sample(sorted(ids), min(20, n))
    vectors = HashEncoder().encode_document([text_of(i) for i in sample])
    for doc_id, found in zip(sample, index.search_by_vector(vectors, k=1)):
        assert found[0].id == doc_id and found[0].score > 0.99
    return ids


@pytest.mark.slow
def test_four_writers_and_a_reader_lose_nothing(target):
    where, options = target
    open_target(where, options).close()  # create the store once
    ctx = context()
    errors = ctx.Queue()
    writers = [ctx.Process(target=writer, args=(where, options, w, 10, 3)) for w in range(4)]
    watcher = ctx.Process(target=reader, args=(where, options, 5.0, errors))
    for p in [*writers, watcher]:
        p.start()
    for p in [*writers, watcher]:
        p.join(180)
    assert [p.exitcode for p in [*writers, watcher]] == [0] * 5
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == []
    index = open_target(where, options)
    expected = {f"w{w}-{b}-{j}" for w in range(4) for b in range(10) for j in range(3)}
    assert check_consistent(index) == expected
    assert index.get(["w3-0-0"])[0].metadata == {"w": 3, "b": 0, "upserted": True}
    assert len(index.search("x", k=200, filter={"w": 1})) == 30
    index.close()


@pytest.mark.slow
def test_kill_9_during_add_loses_nothing_committed(target):
    kill_repeatedly(*target, saves=False)


@pytest.mark.slow
@pytest.mark.stores(STORES[:3])  # the backends whose save() writes files (SQL commits every write instead)
def test_kill_9_during_save_loses_nothing_committed(target):
    where, options = target
    kill_repeatedly(where, options, saves=True)
    assert [n for n in os.listdir(where) if n.startswith(".tmp-")] == []
    assert segment_files(where) == sorted(e["file"] for e in manifest(where)) != []  # no leftovers of the killed


def kill_repeatedly(where: str, options: dict, saves: bool) -> None:
    """Kill a writer 10 times at random points; every reopen must be whole and hold only whole batches."""
    open_target(where, options).close()
    ctx = context()
    rng = random.Random(7)
    for _ in range(10):
        started = ctx.Event()
        child = ctx.Process(target=crasher, args=(where, options, saves, started))
        child.start()
        assert started.wait(60)
        time.sleep(rng.random() * 0.3)  # then kill it at a random point of its work
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        index = open_target(where, options)
        ids = check_consistent(index)
        batches: dict[str, int] = {}
        for record in index.get(sorted(ids)):
            batches[record.metadata["batch"]] = batches.get(record.metadata["batch"], 0) + 1
        assert set(batches.values()) <= {20}, "a batch was stored in part"
        index.close()
    assert len(batches) >= 10  # the children did commit work before they were killed


def test_hash_encoder_is_deterministic():
    a = HashEncoder().encode_document(["x", "y"])
    assert a.shape == (2, DIM) and np.allclose(a, HashEncoder().encode_document(["x", "y"]))
