"""SQLIndex's segments on a SQLite file: reopening maps them and reads only the rows changed since; searches
over them equal an exact search over the table's own vectors through updates, deletes, upserts and reused
rowids; merging bounds their count; a damaged, foreign or missing segment is read around with a warning
and written anew; kill -9 while writing one loses nothing; several processes saving at once agree."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from store_workers import DIM, HashEncoder, saver, text_of, writer
from test_durability import check_consistent, context

from integrations import SQLIndex
from integrations.sql import segments, sqlite_changes

FIXTURE = Path(__file__).parent.parent / "fixtures" / "before-house-plan"


def open_sql(tmp_path, **options) -> SQLIndex:
    return SQLIndex(HashEncoder(), f"sqlite:///{tmp_path}/kb.db", chunk_tokens=None, **options)


def folder(tmp_path) -> Path:
    return tmp_path / "kb.db-segments" / "documents"


def listing(tmp_path) -> dict:
    with sqlite3.connect(tmp_path / "kb.db") as db:
        row = db.execute("SELECT segments FROM embedkit_segments WHERE table_name = 'documents'").fetchone()
    return json.loads(row[0]) if row else {"segments": []}


def files(tmp_path) -> list[str]:
    return sorted(n for n in os.listdir(folder(tmp_path)) if n.startswith("segment-"))


def assert_exact(index: SQLIndex, rng: random.Random, filter=None, check=None) -> None:
    """Searches equal an exact search over the vectors the table holds (read by SQL, not the matrix)."""
    records = index.get(filter=filter, limit=10**6)
    if check is not None:
        assert sorted(r.id for r in records) == sorted(check(r) for r in records if check(r))
    stored = index.get_vectors([r.id for r in records]) if records else np.zeros((0, DIM), np.float32)
    for _ in range(3):
        q = np.asarray([rng.gauss(0, 1) for _ in range(DIM)], np.float32)
        q /= np.linalg.norm(q)
        k = min(10, len(records)) or 1
        hits = index.search_by_vector(q[None], k=k, filter=filter, include_vectors=True)[0]
        scores = stored @ q
        best = np.argsort(-scores, kind="stable")[: len(hits)]
        assert len(hits) == min(k, len(records))
        assert [h.id for h in hits] == [records[i].id for i in best]
        assert np.allclose([h.score for h in hits], scores[best], atol=1e-5)
        for hit, i in zip(hits, best):
            assert np.array_equal(hit.vector, stored[i])


def test_reopening_maps_the_segments_and_reads_only_what_changed(tmp_path):
    index = open_sql(tmp_path)
    ids = [f"d{i}" for i in range(300)]
    index.add([text_of(i) for i in ids], [{"g": i % 7} for i in range(300)], ids=ids)
    index.close()
    assert len(files(tmp_path)) == 1 and listing(tmp_path)["segments"][0]["n"] == 300
    index = open_sql(tmp_path)
    index.add([text_of("late")], [{"g": 1}], ids=["late"])
    assert_exact(index, random.Random(0))
    cache = index._matrix.cache
    assert [p.entry["n"] for p in cache.beneath] == [300] and isinstance(cache.beneath[0].matrix, np.memmap)
    assert cache.keys.tolist() == [301]  # only the row added since is held in memory
    assert_exact(index, random.Random(1), filter={"g": 1}, check=lambda r: r.metadata["g"] == 1 and r.id)
    index.close()
    assert len(files(tmp_path)) == 1  # one changed row is below the size of a segment


@pytest.mark.slow
def test_changes_over_segments_equal_an_exact_search(tmp_path):
    rng = random.Random(5)
    index = open_sql(tmp_path)
    live: dict[str, int] = {}
    for step in range(40):
        ids = list(dict.fromkeys(f"d{rng.randrange(600)}" for _ in range(rng.randrange(1, 40))))
        if step % 4 == 3 and live:
            gone = rng.sample(sorted(live), min(len(live), rng.randrange(1, 30)))
            index.delete(gone)
            for i in gone:
                live.pop(i)
        elif step % 6 == 5 and live:
            changed = rng.sample(sorted(live), min(len(live), 20))
            index.update_metadata(changed, [{"g": 99} for _ in changed])
            live.update(dict.fromkeys(changed, 99))
        else:  # adds and upserts with new texts
            groups = [rng.randrange(3) for _ in ids]
            index.add([f"{text_of(i)} v{step}" for i in ids], [{"g": g} for g in groups], ids=ids)
            live.update(zip(ids, groups))
        if step % 5 == 0:
            index.save(force=step % 10 == 0)
        if step % 8 == 7:  # a fresh instance maps what the last one saved
            index.close()
            index = open_sql(tmp_path)
        assert len(index) == len(live)
        assert_exact(index, rng)
        assert_exact(index, rng, filter={"g": 99}, check=lambda r: r.metadata["g"] == 99 and r.id)
    assert listing(tmp_path)["segments"]
    index.close()


def test_a_reused_rowid_is_not_taken_from_the_segment(tmp_path):
    index = open_sql(tmp_path)
    ids = [f"d{i}" for i in range(100)]
    index.add([text_of(i) for i in ids], ids=ids)
    index.save(force=True)
    index.delete(["d99"])  # the newest rowid: SQLite hands it out again
    index.add(["something else entirely"], ids=["fresh"])
    with sqlite3.connect(tmp_path / "kb.db") as db:
        assert db.execute("SELECT rowid FROM documents WHERE id = 'fresh'").fetchone() == (100,)
    for reopened in (False, True):
        if reopened:
            index.close()
            index = open_sql(tmp_path)
        assert_exact(index, random.Random(2))
        assert [h.id for h in index.search("something else entirely", k=1)] == ["fresh"]
    index.close()


def test_merging_keeps_the_segments_few_and_drops_dead_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(segments, "SEAL_ROWS", 10)
    index = open_sql(tmp_path)
    counts = []
    for b in range(40):
        ids = [f"b{b}-{j}" for j in range(12)]
        index.add([text_of(i) for i in ids], ids=ids)
        index.save()
        counts.append(len(listing(tmp_path)["segments"]))
    assert max(counts) <= int(np.log2(40 * 12 / 10)) + 2 and files(tmp_path) == sorted(
        e["file"] for e in listing(tmp_path)["segments"]
    )
    before = listing(tmp_path)["segments"]
    gone = [f"b{b}-{j}" for b in range(30) for j in range(12)]  # most rows of the oldest, largest segment
    index.delete(gone)
    index.save()
    after = listing(tmp_path)["segments"]
    assert sum(e["n"] for e in after) == 40 * 12 - len(gone) < sum(e["n"] for e in before)
    assert_exact(index, random.Random(3))
    index.close()


def damage(file: Path, how: str, other: Path) -> None:
    if how == "garbled":
        data = bytearray(file.read_bytes())
        data[200:210] = b"\xff" * 10
        file.write_bytes(bytes(data))
    elif how == "truncated":
        with open(file, "r+b") as f:
            f.truncate(file.stat().st_size - 8)
    elif how == "foreign":  # another database's segment of the same size under this one's name
        shutil.copy(other, file)
    else:
        file.unlink()


@pytest.mark.parametrize("how", ["garbled", "truncated", "foreign", "missing"])
def test_a_damaged_foreign_or_missing_segment_is_read_around_and_written_anew(tmp_path, caplog, how):
    for where, offset in ((tmp_path / "other", 1000), (tmp_path, 0)):
        where.mkdir(exist_ok=True)
        index = open_sql(where)
        ids = [f"d{i + offset}" for i in range(100)]
        index.add([text_of(i) for i in ids], [{"g": i % 2} for i in range(100)], ids=ids)
        index.close()
    damage(folder(tmp_path) / files(tmp_path)[0], how, folder(tmp_path / "other") / files(tmp_path / "other")[0])
    with caplog.at_level(logging.WARNING):
        index = open_sql(tmp_path)
        assert_exact(index, random.Random(4))
        assert_exact(index, random.Random(5), filter={"g": 1}, check=lambda r: r.metadata["g"] == 1 and r.id)
        index.close()
    assert any(
        "cannot be used" in r.getMessage() and "reading the table instead" in r.getMessage() for r in caplog.records
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # the close wrote new segments: the next open needs no table read
        index = open_sql(tmp_path)
        assert_exact(index, random.Random(6))
        assert index._matrix.cache.beneath and not len(index._matrix.cache.keys)
        index.close()
    assert not caplog.records
    assert files(tmp_path) == sorted(e["file"] for e in listing(tmp_path)["segments"])


OUTSIDE = {"file": "../kb.db", "n": 1, "seq": 0, "size": 1, "keys": "", "ends": ""}  # a well-formed entry


@pytest.mark.parametrize(
    "listed",
    [
        "{not json",
        '{"top": 1, "seq": 0}',
        json.dumps(
            {"top": 100, "seq": 0, "segments": [dict.fromkeys(("n", "seq", "size"), 1) | {"file": "../../kb.db"}]}
        ),
    ],
)
def test_a_damaged_list_of_segments_is_read_around_and_written_anew(tmp_path, caplog, listed):
    index = open_sql(tmp_path)
    ids = [f"d{i}" for i in range(100)]
    index.add([text_of(i) for i in ids], ids=ids)
    index.close()
    with sqlite3.connect(tmp_path / "kb.db") as db:
        db.execute("UPDATE embedkit_segments SET segments = ?", (listed,))
    with caplog.at_level(logging.WARNING):
        index = open_sql(tmp_path)
        assert check_consistent(index) == set(ids)
        index.close()
    assert any("list of segments is damaged" in r.getMessage() for r in caplog.records)
    assert listing(tmp_path)["segments"] and (tmp_path / "kb.db").stat().st_size > 0  # written anew; kb.db intact
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        index = open_sql(tmp_path)
        assert check_consistent(index) == set(ids) and index._matrix.cache.beneath
        index.close()
    assert not caplog.records


def test_the_change_log_keeps_what_segments_need(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(sqlite_changes, "KEEP", 5)  # the log is pruned hard, but not past a segment
    index = open_sql(tmp_path)
    ids = [f"d{i}" for i in range(200)]
    index.add([text_of(i) for i in ids], ids=ids)
    index.close()
    index = open_sql(tmp_path)
    for i in ids[:60]:
        index.delete([i])
    index.close()  # 60 deletes: fewer changed rows than a segment, so the segment stays as it was
    with caplog.at_level(logging.WARNING):
        index = open_sql(tmp_path)
        assert check_consistent(index) == set(ids[60:])
        assert index._matrix.cache.beneath
        index.close()
    assert not caplog.records


KILLER = """
import os, sys, time
sys.path[:0] = [{tests!r}]
from store_workers import HashEncoder, text_of
from integrations import SQLIndex
from integrations._shared import disk
point, calls = {point!r}, [0]
real = getattr(disk, point)
def stop(*args):
    calls[0] += 1
    if calls[0] == 1:
        print("ready", flush=True)
        time.sleep(600)
    real(*args)
setattr(disk, point, stop)
index = SQLIndex(HashEncoder(), {url!r}, chunk_tokens=None)
index.add([text_of(f"k{{i}}") for i in range(100)], ids=[f"k{{i}}" for i in range(100)])
index.delete(["d0"])
index.save(force=True)
print("finished", flush=True)
"""


# killed at sync_folder: the new segment file is in place, the list does not name it yet; at remove: the
# list changed, and the file it no longer names is still there (the 100 new rows merged with the 100 saved
# before)
@pytest.mark.parametrize("point", ["sync_folder", "remove"])
def test_kill_9_while_writing_a_segment_loses_nothing(tmp_path, caplog, point):
    index = open_sql(tmp_path)
    ids = [f"d{i}" for i in range(100)]
    index.add([text_of(i) for i in ids], ids=ids)
    index.close()
    before = listing(tmp_path)
    script = KILLER.format(tests=str(Path(__file__).parent.parent), point=point, url=f"sqlite:///{tmp_path}/kb.db")
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert (listing(tmp_path) == before) == (point == "sync_folder")
    assert set(files(tmp_path)) - {e["file"] for e in listing(tmp_path)["segments"]}  # the killed one's leftover
    with caplog.at_level(logging.WARNING):
        index = open_sql(tmp_path)
        assert check_consistent(index) == set(ids[1:]) | {f"k{i}" for i in range(100)}
        index.save(force=True)
        index.close()
    assert not caplog.records
    assert files(tmp_path) == sorted(e["file"] for e in listing(tmp_path)["segments"])  # the leftover is gone


@pytest.mark.slow
def test_several_processes_saving_while_others_write_agree(tmp_path):
    url = f"sqlite:///{tmp_path}/kb.db"
    open_sql(tmp_path).close()
    ctx = context()
    stop, errors = ctx.Event(), ctx.Queue()
    savers = [ctx.Process(target=saver, args=(url, {}, stop, errors)) for _ in range(2)]
    writers = [ctx.Process(target=writer, args=(url, {}, w, 12, 25)) for w in range(3)]
    for p in [*savers, *writers]:
        p.start()
    for p in writers:
        p.join(300)
    stop.set()
    for p in savers:
        p.join(300)
    assert [p.exitcode for p in [*writers, *savers]] == [0] * 5
    assert errors.empty()
    index = open_sql(tmp_path)
    index.save(force=True)
    assert check_consistent(index) == {f"w{w}-{b}-{j}" for w in range(3) for b in range(12) for j in range(25)}
    assert index.get(["w2-0-0"])[0].metadata == {"w": 2, "b": 0, "upserted": True}
    assert_exact(index, random.Random(7))
    index.close()
    assert files(tmp_path) == sorted(e["file"] for e in listing(tmp_path)["segments"])


def test_a_database_from_before_segments_gets_them_and_answers_as_before(tmp_path):
    shutil.copy(FIXTURE / "sql.db", tmp_path / "kb.db")
    index = SQLIndex(HashEncoder(), f"sqlite:///{tmp_path}/kb.db")
    before = [[(h.id, round(h.score, 5)) for h in index.search(f"text of d{i}", k=5)] for i in range(5)]
    index.save(force=True)
    index.close()
    assert len(files(tmp_path)) == 1
    index = SQLIndex(HashEncoder(), f"sqlite:///{tmp_path}/kb.db")
    after = [[(h.id, round(h.score, 5)) for h in index.search(f"text of d{i}", k=5)] for i in range(5)]
    assert after == before and index._matrix.cache.beneath
    index.close()


def test_a_database_in_memory_writes_no_segments(tmp_path):
    index = SQLIndex(HashEncoder(), "sqlite://", chunk_tokens=None)
    index.add([text_of(f"d{i}") for i in range(100)], ids=[f"d{i}" for i in range(100)])
    index.save(force=True)
    assert index._matrix.segments is None and len(index.search("text of d1", k=1)) == 1
    index.close()


@pytest.mark.slow
def test_two_instances_in_one_process_keep_each_others_new_segments(tmp_path, monkeypatch):
    """One instance's save removes the unlisted files of its process: while another instance of the same
    process has written a segment and not yet listed it, that save waits instead of removing it."""
    import threading

    first, second = open_sql(tmp_path), open_sql(tmp_path)
    ids = [f"d{i}" for i in range(200)]
    first.add([text_of(i) for i in ids[:100]], ids=ids[:100])
    first.save()  # a first segment, which the second instance reads
    second.search_by_vector(np.ones(DIM, np.float32), k=1)
    first.add([text_of(i) for i in ids[100:]], ids=ids[100:])
    commit = segments.Segments._commit
    others: list[threading.Thread] = []

    def commit_after_another_save(self, *args):
        if not others:  # the second instance saves between the first one's writing and its listing
            others.append(threading.Thread(target=second.save))
            others[0].start()
            others[0].join(1.0)
        return commit(self, *args)

    monkeypatch.setattr(segments.Segments, "_commit", commit_after_another_save)
    monkeypatch.setattr(segments, "SEAL_ROWS", 10**6)  # so the second instance has nothing to write
    first.save(force=True)
    others[0].join(60)
    listed = [e["file"] for e in listing(tmp_path)["segments"]]
    assert len(listed) == 1 and files(tmp_path) == listed
    first.close(), second.close()
    assert_exact(open_sql(tmp_path), random.Random(2))
