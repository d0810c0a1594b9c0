"""FaissIndex segments: searches over many segments equal an exact search, merging keeps their number
bounded, folders from before segments convert, and kill -9 during a seal, a merge or a conversion, or
several writers beside a merging process, lose nothing."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from store_workers import HashEncoder, manifest, merger, segment_files, text_of, writer
from test_durability import check_consistent, context

from integrations import FaissIndex
from integrations.faiss import segments

FIXTURES = Path(__file__).parent.parent / "fixtures" / "before-segments"
RECORDED = json.loads((FIXTURES / "answers.json").read_text())


def exact(live: dict[str, np.ndarray], query: np.ndarray, k: int) -> list[str]:
    """The ``k`` best ids by cosine similarity, computed here."""
    ids = sorted(live)
    matrix = np.stack([live[i] for i in ids])
    scores = (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)) @ (query / np.linalg.norm(query))
    return [ids[j] for j in np.argsort(-scores, kind="stable")[:k]]


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_searches_over_many_segments_equal_an_exact_search_and_merging_bounds_them(tmp_path, monkeypatch, precision):
    monkeypatch.setattr(segments, "SEAL_ROWS", 25)
    index = FaissIndex(HashEncoder(), path=str(tmp_path), precision=precision)
    rng, live, meta, counts = random.Random(3), {}, {}, []
    for step in range(120):
        ids = [f"d{rng.randrange(1500)}" for _ in range(rng.randrange(1, 30))]
        ids = list(dict.fromkeys(ids))
        if step % 5 == 4 and live:
            gone = rng.sample(sorted(live), min(len(live), rng.randrange(1, 20)))
            index.delete(gone)
            for i in gone:
                live.pop(i), meta.pop(i)
            continue
        version = rng.randrange(3)  # an upsert changes the vector of an id already stored
        texts = [f"{text_of(i)} v{version}" for i in ids]
        index.add(texts, [{"g": int(i[1:]) % 4} for i in ids], ids=ids)
        live.update(zip(ids, HashEncoder().encode_document(texts)))
        meta.update({i: int(i[1:]) % 4 for i in ids})
        if step % 7 == 0:
            index.save()
        counts.append(len(index._segments.sealed))
    assert len(index) == len(live) and max(counts) >= 4  # there were many segments to fan out over
    bound = (segments.FANOUT - 1) * (1 + math.ceil(math.log(len(live) / 25 + 1, segments.FANOUT))) + 1
    assert max(counts) <= bound
    queries = HashEncoder().encode_query([f"query {j}" for j in range(10)])
    for reopened in (False, True):
        if reopened:
            index.close()
            index = FaissIndex(HashEncoder(), path=str(tmp_path), precision=precision)
        for q in queries:
            if precision == "float32":  # int8 ranks by quantized scores: the same set up to near-ties
                assert [h.id for h in index.search_by_vector(q[None], k=10)[0]] == exact(live, q, 10)
                group = {i: v for i, v in live.items() if meta[i] == 2}
                found = index.search_by_vector(q[None], k=10, filter={"g": 2})[0]
                assert [h.id for h in found] == exact(group, q, 10)
            else:
                found = {h.id for h in index.search_by_vector(q[None], k=10)[0]}
                assert len(found & set(exact(live, q, 10))) >= 9
    assert segment_files(tmp_path) == sorted(e["file"] for e in manifest(tmp_path))


def test_segment_ranges_tile_the_fids_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(segments, "SEAL_ROWS", 10)
    index = FaissIndex(HashEncoder(), path=str(tmp_path), kind="hnsw")
    for b in range(20):
        index.add([text_of(f"d{b}-{j}") for j in range(7)], ids=[f"d{b}-{j}" for j in range(7)])
    entries = manifest(tmp_path)
    assert [e["lo"] for e in entries[1:]] == [e["hi"] + 1 for e in entries[:-1]] and entries[0]["lo"] == 1
    assert sum(e["n"] for e in entries) + index._segments.tail.n == 140


def test_segments_of_the_top_tier_are_merged_no_further(tmp_path, monkeypatch):
    monkeypatch.setattr(segments, "SEAL_ROWS", 10)
    monkeypatch.setattr(segments, "TOP_TIER", 1)  # segments of 40 live rows (10 x FANOUT) are final
    index = FaissIndex(HashEncoder(), path=str(tmp_path))
    texts = {f"d{i}": text_of(f"d{i}") for i in range(400)}
    for b in range(40):
        ids = [f"d{b * 10 + j}" for j in range(10)]
        index.add([texts[i] for i in ids], ids=ids)
    index.save()
    assert [e["n"] for e in manifest(tmp_path)] == [40] * 10  # four of 10 merged into one, then no more
    index.delete([f"d{i}" for i in range(40, 400, 8)])  # a few rows of each: their live rows fall a tier
    index.save()
    assert [e["n"] for e in manifest(tmp_path)] == [40] * 10  # and still they are not merged again
    index.delete([f"d{i}" for i in range(25)])  # a top-tier segment more than half dead is still rewritten
    index.save()
    assert [e["n"] for e in manifest(tmp_path)] == [15] + [40] * 9
    for i in ("d25", "d201", "d399"):
        assert index.search(texts[i], k=1)[0].id == i
    index.compact()  # and compact() merges everything
    assert [e["n"] for e in manifest(tmp_path)] == [375 - 45]
    index.close()


def _open_fixture(folder, name, **kw):
    kind, precision = name.split("-")
    return FaissIndex(HashEncoder(), path=str(folder), kind=kind, precision=precision, **kw)


def _answers(index) -> list:
    return [[[h.id, round(h.score, 4)] for h in index.search(q, k=5, filter=f)] for q, f in RECORDED["queries"]]


def assert_answers(index, name: str) -> None:
    """The answers the old code gave; IVF's (approximate, over lists trained anew) with the same best hit and
    most of the rest."""
    recorded, answers = RECORDED["answers"][name], _answers(index)
    assert len(index) == recorded["len"]
    if not name.startswith("ivf"):
        assert answers == recorded["answers"]
    for mine, theirs in zip(answers, recorded["answers"]):
        assert len(mine) == len(theirs) and mine[0] == theirs[0]
        assert len({a[0] for a in mine} & {b[0] for b in theirs}) >= len(theirs) - 2


NAMES = sorted(RECORDED["answers"])


@pytest.mark.parametrize("name", NAMES)
def test_folders_from_before_segments_answer_as_they_did_and_convert(tmp_path, caplog, name):
    """Written by the code at eafb1aa: a whole-index snapshot of 1,300 rows, then 5 adds and 3 deletes."""
    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    (old,) = [n for n in os.listdir(folder) if n.startswith("snapshot-")]
    with caplog.at_level(logging.WARNING):
        index = _open_fixture(folder, name)
        assert_answers(index, name)
        index.close()  # converts: the rows become a segment, the snapshot goes
    assert not caplog.records
    assert not (folder / old).exists() and segment_files(folder) == [e["file"] for e in manifest(folder)]
    with sqlite3.connect(folder / "docs.sqlite") as db:
        assert db.execute("SELECT count(*) FROM info WHERE key = 'snapshot'").fetchone() == (0,)
    assert_answers(_open_fixture(folder, name), name)


KILLER = """
import os, sys, time
sys.path[:0] = [{tests!r}]
from store_workers import HashEncoder, text_of
from integrations import FaissIndex
from integrations._shared import disk
from integrations.faiss import segments
segments.SEAL_ROWS = 10
point, calls = {point!r}, [0]
real = getattr(disk, point)
def stop(*args):
    real(*args)
    calls[0] += 1
    if calls[0] == {nth}:
        print("ready", flush=True)
        time.sleep(600)
setattr(disk, point, stop)
kind, precision = {name!r}.split("-")
index = FaissIndex(HashEncoder(), path={folder!r}, kind=kind, precision=precision)
index.add([text_of(f"k{{i}}") for i in range({adds})], ids=[f"k{{i}}" for i in range({adds})])
index.save()
print("finished", flush=True)
"""


def kill_at(folder, name: str, point: str, nth: int = 1, adds: int = 0) -> None:
    """Run a process that opens ``folder``, adds ``adds`` rows and saves; kill -9 it right after its
    ``nth`` call of ``integrations._shared.disk.<point>``."""
    script = KILLER.format(
        tests=str(Path(__file__).parent.parent), point=point, nth=nth, name=name, folder=str(folder), adds=adds
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()


# sync_folder runs once a segment file is in place, before the manifest names it; remove runs after
# the manifest changed, for the files it no longer names
@pytest.mark.parametrize("point", ["sync_folder", "remove"])
def test_kill_9_during_a_conversion_leaves_the_folder_usable(tmp_path, caplog, point):
    name = "ivf-int8"
    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    kill_at(folder, name, point)
    if point == "sync_folder":  # killed between the segment file and the manifest: the snapshot is current
        assert segment_files(folder) and not manifest(folder)
    else:  # killed after the manifest changed
        assert manifest(folder)
    with caplog.at_level(logging.WARNING):
        index = _open_fixture(folder, name)
        assert_answers(index, name)
        index.close()
    assert not caplog.records  # no segment was found damaged: a reader never sees half a conversion
    assert not [n for n in os.listdir(folder) if n.startswith((".tmp-", "snapshot-"))]
    assert segment_files(folder) == [e["file"] for e in manifest(folder)]


@pytest.mark.parametrize("name", ["flat-float32", "hnsw-int8", "ivf-ubinary"])
@pytest.mark.parametrize("nth", [1, 2])  # the seal of the new rows, then the merge it makes due
def test_kill_9_during_a_seal_or_a_merge_loses_nothing(tmp_path, caplog, name, nth, monkeypatch):
    monkeypatch.setattr(segments, "SEAL_ROWS", 10)
    folder = tmp_path / name
    kind, precision = name.split("-")
    index = FaissIndex(HashEncoder(), path=str(folder), kind=kind, precision=precision)
    for b in range(3):
        index.add([text_of(f"d{b}-{j}") for j in range(12)], ids=[f"d{b}-{j}" for j in range(12)])
    index.delete(["d0-0", "d2-5"])
    index.close()
    assert len(manifest(folder)) == 3
    kill_at(folder, name, "sync_folder", nth=nth, adds=12)
    assert set(segment_files(folder)) - {e["file"] for e in manifest(folder)}  # killed between file and manifest
    with caplog.at_level(logging.WARNING):
        index = FaissIndex(HashEncoder(), path=str(folder), kind=kind, precision=precision)
        assert check_consistent(index) == {f"d{b}-{j}" for b in range(3) for j in range(12)} - {"d0-0", "d2-5"} | {
            f"k{i}" for i in range(12)
        }
        index.close()
    assert not caplog.records
    assert segment_files(folder) == sorted(e["file"] for e in manifest(folder))  # the killed one's file is gone
    assert len(manifest(folder)) <= 3  # the merge it did not finish was done again


@pytest.mark.slow
def test_several_processes_write_while_another_merges(tmp_path):
    where, options = str(tmp_path / "idx"), {"kind": "hnsw", "precision": "int8"}
    FaissIndex(HashEncoder(), path=where, **options).close()
    ctx = context()
    stop, errors = ctx.Event(), ctx.Queue()
    busy = ctx.Process(target=merger, args=(where, options, stop, errors))
    busy.start()
    writers = [ctx.Process(target=writer, args=(where, options, w, 12, 25)) for w in range(3)]
    for p in writers:
        p.start()
    for p in writers:
        p.join(300)
    stop.set()
    busy.join(300)
    assert [p.exitcode for p in [*writers, busy]] == [0] * 4
    assert errors.empty()
    index = FaissIndex(HashEncoder(), path=where, **options)
    assert check_consistent(index) == {f"w{w}-{b}-{j}" for w in range(3) for b in range(12) for j in range(25)}
    assert index.get(["w2-0-0"])[0].metadata == {"w": 2, "b": 0, "upserted": True}
    index.close()
    assert segment_files(where) == sorted(e["file"] for e in manifest(where))
