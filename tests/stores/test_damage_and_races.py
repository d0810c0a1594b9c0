"""Stores under fault injection: rows that must stay visible, folders that must not reach outside
themselves, upgrades run by several processes, files that are damaged, foreign or read-only, and answers
that must come from one snapshot."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from store_workers import HashEncoder, fill, manifest, open_at_once, text_of, write_v1_folder

from integrations import CorruptIndexError, FaissIndex, NotAnIndexError, SQLIndex

STORES = ["faiss-flat-float32", "faiss-hnsw-int8", "faiss-flat-ubinary", "sqlite", "postgres"]


def _sql(file, statement, *args):
    with sqlite3.connect(file) as db:
        return db.execute(statement, args).fetchall()


def _saved_folder(tmp_path, n=30, kind="hnsw", precision="float32"):
    folder = tmp_path / "idx"
    index = FaissIndex(HashEncoder(), path=str(folder), kind=kind, precision=precision)
    fill(index, n)
    index.save(force=True)
    index.close()
    return folder


def _segment_entry(folder) -> dict:
    (entry,) = manifest(folder)
    return entry


def _set_segment_entry(folder, entry: dict) -> None:
    _sql(folder / "docs.sqlite", "UPDATE info SET value = ? WHERE key = 'segments'", json.dumps([entry]))


def _schema(file):
    return _sql(file, "SELECT type, name, sql FROM sqlite_master ORDER BY name")


# 1. a row added under a reused rowid


def test_a_document_added_after_deleting_the_newest_is_found(make):
    index = make()
    fill(index, 5)
    assert len(index.search("x", k=10, filter={"i": {"$gte": 0}})) == 5  # the caches are loaded
    index.delete(["d4"])
    assert len(index.search("x", k=10)) == len(index.search("x", k=10, filter={"i": {"$gte": 0}})) == 4
    index.add([text_of("new")], [{"i": 99}], ids=["new"])  # SQLite hands out the deleted row's rowid again
    assert index.search(text_of("new"), k=1)[0].id == "new"
    assert [h.id for h in index.search(text_of("new"), k=10, filter={"i": {"$gte": 0}})][0] == "new"
    assert [h.id for h in index.search("x", k=10, filter={"i": 99})] == ["new"]
    assert len(index.search("x", k=10)) == 5


def test_an_index_searched_while_empty_finds_what_another_instance_adds_later(make):
    reader = make()
    assert reader.search("x") == [] and reader.search("x", filter={"i": 1}) == []
    fill(make(), 3)
    assert len(reader.search("x", k=10)) == 3 and [h.id for h in reader.search("x", filter={"i": 1})] == ["d1"]


# 2. a crafted docstore naming a file outside its folder


@pytest.mark.parametrize("entry", ["../victim.faiss", "ABSOLUTE", "symlink"])
def test_a_segment_entry_outside_the_folder_is_refused_and_nothing_outside_is_touched(tmp_path, entry):
    folder = _saved_folder(tmp_path, 30)
    segment = _segment_entry(folder)
    victim = tmp_path / "victim.faiss"  # a valid segment, so that reading it would go unnoticed
    shutil.copy(folder / segment["file"], victim)
    before = victim.read_bytes()
    if entry == "symlink":
        (folder / segment["file"]).unlink()
        (folder / segment["file"]).symlink_to(victim)
        name = segment["file"]
    else:
        name = str(victim) if entry == "ABSOLUTE" else entry
        _set_segment_entry(folder, dict(segment, file=name))
    for _ in range(2):  # and again: the first attempt changed nothing
        with pytest.raises(CorruptIndexError, match=f"docs.sqlite: the segment entry '{name}' is not a segment file"):
            FaissIndex(HashEncoder(), path=str(folder), kind="hnsw").close()
    assert victim.read_bytes() == before


def test_a_0_1_folder_whose_current_points_outside_is_refused(tmp_path):
    outside = write_v1_folder(tmp_path / "elsewhere")
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "CURRENT").write_text(f"../elsewhere/{outside.name}")
    with pytest.raises(CorruptIndexError, match="CURRENT names '../elsewhere/gen-.*', not a generation folder inside"):
        FaissIndex(HashEncoder(), path=str(folder))
    assert sorted(os.listdir(folder)) == ["CURRENT"]


def test_a_0_1_folder_whose_current_is_not_utf8_is_refused(tmp_path):
    write_v1_folder(tmp_path / "old")
    (tmp_path / "old" / "CURRENT").write_bytes(b"gen-\xff\xfe")
    where = re.escape(str(tmp_path / "old" / "CURRENT"))
    with pytest.raises(CorruptIndexError, match=f"{where}: not a generation name \\(byte 4 is not UTF-8\\)"):
        FaissIndex(HashEncoder(), path=str(tmp_path / "old"))
    assert not (tmp_path / "old" / "docs.sqlite").exists()


# 3. several processes opening an embedkit 0.1 folder at once


@pytest.mark.slow
def test_three_processes_opening_a_0_1_folder_at_once_keep_every_document(tmp_path):
    names = [f"v{i}" for i in range(1500)]
    folders = [str(tmp_path / f"trial{t}") for t in range(20)]
    for folder in folders:
        write_v1_folder(tmp_path / folder, names)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=open_at_once, args=(folders, barrier, results)) for _ in range(3)]
    for p in procs:
        p.start()
    counts = [results.get(timeout=300) for _ in range(3 * len(folders))]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert sorted(counts) == sorted((f, len(names) - 1) for f in folders for _ in range(3))
    for folder in folders:
        assert len(FaissIndex(HashEncoder(), path=folder)) == len(names) - 1
        assert not [n for n in os.listdir(folder) if "migrating" in n]


# 4. large $or filters (their cost is measured in benchmarks/filter_scale.py)


@pytest.mark.parametrize("store", ["faiss", "sqlite"])
def test_an_or_of_5000_equalities_matches_exactly(tmp_path, store):
    index = FaissIndex(HashEncoder(), kind="hnsw") if store == "faiss" else SQLIndex(HashEncoder(), "sqlite://")
    fill(index, 3000, lambda i: {"i": i, "s": f"s{i % 7}", "b": i % 3 == 0})
    leaves = [{"i": v} for v in range(1, 10000, 2)]  # 5,000 leaves, half of them matching nothing
    leaves += [{"s": "s3"}, {"b": True}, {"i": 4.0}, {"i": "6"}]
    hits = index.search("x", k=3000, filter={"$or": leaves})
    truth = {i for i in range(3000) if i % 2 or i % 7 == 3 or i % 3 == 0 or i == 4}
    assert {int(h.id[1:]) for h in hits} == truth
    assert index.delete(filter={"$or": leaves}) == len(truth) and len(index) == 3000 - len(truth)


# 5. torn passages while documents are replaced


class ChunkingHashEncoder(HashEncoder):
    """HashEncoder with the packaged model's tokenizer, so that the stores chunk long texts."""

    max_seq_length = 128

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer


def _versions(doc: str) -> list[str]:
    """Texts of one document that chunk differently: long, short, longer."""
    words = "the quick brown fox jumps over a lazy dog near river banks".split()
    return [" ".join(f"{doc}v{v}{w}" for w in words * (1 + 3 * (v % 3))) for v in range(6)]


@pytest.mark.slow
def test_hits_come_from_one_version_of_each_document_during_upserts(make, minilm_path):
    from transformers import AutoTokenizer

    encoder = ChunkingHashEncoder(AutoTokenizer.from_pretrained(minilm_path))
    index = make(encoder, chunk_tokens=12, chunk_overlap=2)
    docs = [f"doc{d}" for d in range(3)]
    versions = {doc: _versions(doc) for doc in docs}
    spans = {
        text: {tuple(s) for s in (index.chunker.spans([text])[0] or [])} for vs in versions.values() for text in vs
    }
    index.add([versions[d][0] for d in docs], ids=docs)
    stop, errors, searched = threading.Event(), [], [0]

    def reporting(work):
        def run(seed):
            try:
                work(np.random.default_rng(seed))
            except Exception as exc:  # noqa: BLE001 - a failed call is a finding too (PostgreSQL deadlocked)
                errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")

        return run

    @reporting
    def upsert(rng):
        while not stop.is_set():
            doc = docs[rng.integers(len(docs))]
            index.add([versions[doc][rng.integers(6)]], ids=[doc])

    @reporting
    def search(rng):
        while not stop.is_set():
            doc = docs[rng.integers(len(docs))]
            for hit in index.search(versions[doc][rng.integers(6)], k=3):
                searched[0] += 1
                if hit.text not in versions[hit.id]:
                    errors.append(f"{hit.id}: a text no version had: {hit.text[:40]!r}")
                elif hit.span is not None and hit.span not in spans[hit.text]:
                    errors.append(f"{hit.id}: span {hit.span} is no chunk of a {len(hit.text)}-character text")

    threads = [threading.Thread(target=upsert, args=(s,)) for s in range(4)]
    threads += [threading.Thread(target=search, args=(10 + s,)) for s in range(3)]
    for t in threads:
        t.start()
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join(60)
    assert searched[0] > 100 and errors == []
    assert len(index) == 3 and {r.id for r in index} == set(docs)
    for doc in docs:  # no chunk of an older version is left behind
        text = index.get([doc])[0].text
        assert {tuple(h.span) for h in index.search(text, k=1000) if h.id == doc} <= spans[text] | {None}


# 6. damaged or swapped segments


@pytest.mark.parametrize("kind, precision", [("hnsw", "float32"), ("flat", "int8"), ("flat", "ubinary")])
@pytest.mark.parametrize("damage", ["id map byte", "vector byte", "another index"])
def test_a_damaged_or_foreign_segment_is_rebuilt(tmp_path, caplog, kind, precision, damage):
    folder = _saved_folder(tmp_path, 40, kind, precision)
    segment = folder / _segment_entry(folder)["file"]
    data = bytearray(segment.read_bytes())
    if damage == "another index":  # the same shape and fids, other documents
        other = FaissIndex(HashEncoder(), path=str(tmp_path / "other"), kind=kind, precision=precision)
        other.add([text_of(f"x{i}") for i in range(40)], ids=[f"d{i}" for i in range(40)])
        other.save(force=True)
        other.close()
        data = (tmp_path / "other" / _segment_entry(tmp_path / "other")["file"]).read_bytes()
    elif damage == "id map byte":  # the low byte of the fourth-last fid
        data[-8 * 4] ^= 0x01
    else:
        data[len(data) // 3] ^= 0x40
    segment.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        index = FaissIndex(HashEncoder(), path=str(folder), kind=kind, precision=precision)
    assert any(segment.name in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    for i in range(40):
        assert index.search(text_of(f"d{i}"), k=1)[0].id == f"d{i}"
    index.close()  # the rebuilt segment replaces the damaged one
    assert not segment.exists() and len(manifest(folder)) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert len(FaissIndex(HashEncoder(), path=str(folder), kind=kind, precision=precision)) == 40
    assert not [r for r in caplog.records if "rebuilding" in r.getMessage()]


# 7. foreign or empty SQLite files


def test_faiss_refuses_a_sqlindex_database(tmp_path):
    folder = tmp_path / "idx"
    folder.mkdir()
    fill(SQLIndex(HashEncoder(), f"sqlite:///{folder}/docs.sqlite"), 3)
    before = _schema(folder / "docs.sqlite")
    with pytest.raises(NotAnIndexError, match="docs.sqlite is not a FaissIndex docstore"):
        FaissIndex(HashEncoder(), path=str(folder))
    assert _schema(folder / "docs.sqlite") == before
    assert len(SQLIndex(HashEncoder(), f"sqlite:///{folder}/docs.sqlite")) == 3


def test_faiss_refuses_an_empty_docstore_beside_a_segment(tmp_path):
    folder = _saved_folder(tmp_path)
    for suffix in ("", "-wal", "-shm"):
        if (folder / f"docs.sqlite{suffix}").exists():
            (folder / f"docs.sqlite{suffix}").unlink()
    (folder / "docs.sqlite").write_bytes(b"")
    with pytest.raises(NotAnIndexError, match="docs.sqlite is empty, but the folder holds segment"):
        FaissIndex(HashEncoder(), path=str(folder), kind="hnsw")
    assert (folder / "docs.sqlite").read_bytes() == b""


@pytest.mark.slow
@pytest.mark.parametrize("table", ["documents", "bodies", "docs"])
def test_sqlindex_refuses_a_faiss_docstore(tmp_path, table):
    folder = _saved_folder(tmp_path)
    before = _schema(folder / "docs.sqlite")
    with pytest.raises(NotAnIndexError, match="docs.sqlite is a FaissIndex docstore; open its folder with FaissIndex"):
        SQLIndex(HashEncoder(), f"sqlite:///{folder}/docs.sqlite", table=table)
    assert _schema(folder / "docs.sqlite") == before
    index = FaissIndex(HashEncoder(), path=str(folder), kind="hnsw")
    assert index.search(text_of("d3"), k=1)[0].id == "d3" and len(index) == 30
    if table != "documents":
        return
    result = _cli("add", f"sqlite:///{folder}/docs.sqlite", str(_jsonl(tmp_path)))  # as a user would
    assert result.returncode == 4 and "Traceback" not in result.stderr and "FaissIndex docstore" in result.stderr
    assert _schema(folder / "docs.sqlite") == before


def test_a_docstore_written_before_format_markers_still_opens(tmp_path):
    folder = _saved_folder(tmp_path)
    _sql(folder / "docs.sqlite", "PRAGMA application_id = 0")
    assert len(FaissIndex(HashEncoder(), path=str(folder), kind="hnsw")) == 30
    with pytest.raises(NotAnIndexError, match="FaissIndex docstore"):
        SQLIndex(HashEncoder(), f"sqlite:///{folder}/docs.sqlite")


# 8. damaged files and odd requests get embedkit's own errors


def test_a_bad_metadata_row_in_a_0_1_folder_is_reported(tmp_path):
    gen = write_v1_folder(tmp_path / "old")
    _sql(gen / "docs.sqlite", "UPDATE docs SET metadata = '{oops' WHERE id = 'c'")
    with pytest.raises(CorruptIndexError, match="the metadata of document 'c' is not a JSON object"):
        FaissIndex(HashEncoder(), path=str(tmp_path / "old"))
    assert not [n for n in os.listdir(tmp_path / "old") if n.startswith("docs.sqlite")]


def _damage_pages(file, table: str) -> None:
    """Garbage over the first bytes of ``table``'s root page and over every page after it."""
    ((root,),) = _sql(file, "SELECT rootpage FROM sqlite_master WHERE name = ?", table)
    (page_size,) = _sql(file, "PRAGMA page_size")[0]
    data = bytearray(open(file, "rb").read())
    rng = np.random.default_rng(root)
    for start in range((root - 1) * page_size, len(data), page_size):
        data[start : start + 24] = rng.integers(0, 256, 24, dtype=np.uint8).tobytes()
    open(file, "wb").write(bytes(data))


@pytest.mark.parametrize("table", ["bodies", "docs", "info"])
def test_bit_flips_in_a_ubinary_docstore_raise_corrupt_index_error(tmp_path, table):
    folder = _saved_folder(tmp_path, 300, "flat", "ubinary")
    _sql(folder / "docs.sqlite", "PRAGMA wal_checkpoint(TRUNCATE)")
    _damage_pages(folder / "docs.sqlite", table)
    calls = [
        lambda: FaissIndex(HashEncoder(), path=str(folder), kind="flat", precision="ubinary"),
        lambda ix: ix.search("text of d3", k=3),
        lambda ix: ix.search("text of d3", k=3, filter={"i": 3}),
        lambda ix: ix.get(["d3"]),
        lambda ix: len(ix),
        lambda ix: ix.add(["new"], ids=["new"]),
    ]
    failures = []
    try:
        index = calls[0]()
        for call in calls[1:]:
            try:
                call(index)
            except CorruptIndexError as exc:
                failures.append(str(exc))
    except CorruptIndexError as exc:
        failures.append(str(exc))
    assert failures and all("docs.sqlite" in f and "damaged" in f for f in failures)


def test_a_truncated_sqlindex_file_raises_corrupt_index_error(tmp_path):
    file = tmp_path / "t.db"
    fill(SQLIndex(HashEncoder(), f"sqlite:///{file}"), 400)
    _sql(file, "PRAGMA wal_checkpoint(TRUNCATE)")
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptIndexError, match=f"{file}.*damaged"):
        SQLIndex(HashEncoder(), f"sqlite:///{file}").search("x")


@pytest.fixture
def read_only(tmp_path):
    """A folder mounted read-only (a bind mount), as an index on a CD or a read-only volume."""
    source, target = tmp_path / "rw", tmp_path / "ro"
    source.mkdir()
    target.mkdir()
    yield source, target
    subprocess.run(["umount", str(target)], capture_output=True)


def _in_read_only_mount(source, target, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` where ``target`` shows ``source`` read-only, in a mount namespace of its own."""
    script = f'mount --bind "{source}" "{target}" && mount -o remount,bind,ro "{target}" && exec "$0" -c "$1"'
    tests = os.path.dirname(os.path.dirname(__file__))  # where store_workers is
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", script, sys.executable, code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


READ_ONLY_CHECK = """
from store_workers import HashEncoder, text_of
from integrations import ReadOnlyIndexError, open_index
index = open_index({target!r}, HashEncoder())
assert len(index) == 30, len(index)
assert index.search(text_of("d3"), k=1)[0].id == "d3"
assert [h.id for h in index.search("x", k=5, filter={{"i": 7}})] == ["d7"]
try:
    index.add(["new"], ids=["new"])
except ReadOnlyIndexError as exc:
    print("refused:", exc)
index.close()
print("ok")
"""


@pytest.mark.slow
@pytest.mark.parametrize("store", ["faiss", "sqlite"])
def test_an_index_on_read_only_media_opens_for_reading(tmp_path, read_only, store):
    source, target = read_only
    if store == "faiss":
        index, where = FaissIndex(HashEncoder(), path=str(source / "idx")), str(target / "idx")
    else:
        index, where = SQLIndex(HashEncoder(), f"sqlite:///{source}/d.db"), f"sqlite:///{target}/d.db"
    fill(index, 30)
    index.close()
    before = {
        n: hashlib.sha256((source / n).read_bytes()).hexdigest() for n in os.listdir(source) if (source / n).is_file()
    }
    result = _in_read_only_mount(source, target, READ_ONLY_CHECK.format(target=where))
    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout and "is read-only" in result.stdout and result.stdout.endswith("ok\n")
    assert {n: hashlib.sha256((source / n).read_bytes()).hexdigest() for n in before} == before


def _jsonl(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "a first document"}) + "\n")
    return path


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "integrations.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )


def test_the_cli_names_an_unsupported_url_without_a_traceback(tmp_path):
    result = _cli("search", f"file://{tmp_path}/x", "query")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "'file' is not a database this library opens" in result.stderr


def test_a_file_given_as_a_faiss_folder_is_refused(tmp_path):
    (tmp_path / "f.txt").write_text("notes")
    with pytest.raises(NotAnIndexError, match="f.txt is a file, not a FaissIndex folder"):
        FaissIndex(HashEncoder(), path=str(tmp_path / "f.txt"))
    assert (tmp_path / "f.txt").read_text() == "notes"


def test_huge_k_is_clamped_everywhere(make):
    index = make()
    fill(index, 5)
    assert len(index.search("x", k=10**20)) == 5
    assert len(index.search("x", k=10**20, filter={"i": {"$lt": 3}})) == 3
    assert len(index.search("text of d1", k=10**20, mode="hybrid", candidates=10**20)) == 5
    assert len(index.get(limit=10**20, offset=1)) == 4


def test_metadata_nested_too_deep_is_refused_everywhere(make):
    index = make()
    fill(index, 2)
    deep: dict = {"leaf": 1}
    for _ in range(3000):
        deep = {"k": deep}
    with pytest.raises(ValueError, match="metadata at index 1 nests more than 100 levels deep"):
        index.add(["a", "b"], [{}, deep], ids=["a", "b"])
    with pytest.raises(ValueError, match="metadata at index 0 nests more than 100 levels deep"):
        index.update_metadata(["d0"], [{"x": [deep]}])
    assert len(index) == 2 and index.get(["d0"])[0].metadata == {"i": 0}


def test_ids_longer_than_postgres_can_index_are_refused_there_and_stored_elsewhere(make, request):
    index = make()
    long_id, at_limit = "x" * 100_000, "é" * 1024  # 2,048 bytes in UTF-8
    if "postgres" in request.node.callspec.id:
        with pytest.raises(ValueError, match="id at index 1 is 100000 bytes; PostgreSQL indexes ids of at most 2048"):
            index.add(["a", "b"], ids=["a", long_id])
        assert len(index) == 0
        long_id = at_limit
    index.add(["a", "b"], ids=["a", long_id])
    assert [r.id for r in index.get([long_id])] == [long_id] and len(index) == 2
