"""FaissIndex folders: durable writes, several instances, segments, and folders written by embedkit 0.1."""

from __future__ import annotations

import os
import sqlite3
import threading

import faiss
import numpy as np
import pytest
from store_workers import HashEncoder, manifest, segment_files, text_of, write_v1_folder

from integrations import CorruptIndexError, FaissIndex


def add(index, names, **metadata):
    index.add([text_of(n) for n in names], [dict(metadata, name=n) for n in names], ids=list(names))


def test_every_write_is_durable_without_save(tmp_path):
    a = FaissIndex(HashEncoder(), path=str(tmp_path), kind="hnsw")
    add(a, ["x", "y", "z"])
    a.delete(["y"])
    b = FaissIndex(HashEncoder(), path=str(tmp_path), kind="hnsw")  # a was neither saved nor closed
    assert len(b) == 2 and [h.id for h in b.search(text_of("z"), k=1)] == ["z"]
    assert segment_files(tmp_path) == []


def test_two_instances_opened_before_either_writes_keep_both_documents(tmp_path):
    a = FaissIndex(HashEncoder(), path=str(tmp_path))
    b = FaissIndex(HashEncoder(), path=str(tmp_path))
    add(a, ["from-a"])
    a.save(force=True)
    add(b, ["from-b"])
    b.save(force=True)
    assert sorted(h.id for h in FaissIndex(HashEncoder(), path=str(tmp_path)).search("q", k=10)) == ["from-a", "from-b"]
    assert sorted(h.id for h in a.search("q", k=10)) == ["from-a", "from-b"]  # a sees b's write on its next read
    b.delete(["from-a"])
    assert [h.id for h in a.search("q", k=10)] == ["from-b"] and len(a) == 1


def test_reopening_while_another_instance_saves_never_fails(tmp_path, caplog):
    writer = FaissIndex(HashEncoder(), path=str(tmp_path), kind="hnsw")
    add(writer, [f"d{i}" for i in range(50)])
    errors, done = [], threading.Event()

    def save_repeatedly():
        try:
            for i in range(25):
                add(writer, [f"e{i}"])
                writer.save(force=True)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        done.set()

    thread = threading.Thread(target=save_repeatedly)
    thread.start()
    opened = 0
    while not done.is_set() or opened < 5:
        try:
            reader = FaissIndex(HashEncoder(), path=str(tmp_path), kind="hnsw")
            assert len(reader) >= 50
            reader.close()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        opened += 1
    thread.join()
    assert errors == []
    assert not [r for r in caplog.records if "cannot be used" in r.getMessage()]  # no false damage, no rebuilds
    assert segment_files(tmp_path) == sorted(e["file"] for e in manifest(tmp_path))
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]


def test_save_keeps_a_small_tail_in_memory_and_reopen_rebuilds_it(tmp_path):
    index = FaissIndex(HashEncoder(), path=str(tmp_path), kind="hnsw")
    add(index, [f"d{i}" for i in range(30)])
    index.save()
    assert segment_files(tmp_path) == []  # 30 rows: rebuilding them on open costs less than a file
    index.save(force=True)
    first = segment_files(tmp_path)
    add(index, ["late-1", "late-2"])
    index.delete(["d0"])  # a tombstone in the segment
    index.save()
    assert segment_files(tmp_path) == first
    reopened = FaissIndex(HashEncoder(), path=str(tmp_path), kind="hnsw")
    assert len(reopened) == 31 and reopened.search(text_of("late-2"), k=1)[0].id == "late-2"
    assert "d0" not in {h.id for h in reopened.search(text_of("d0"), k=31)}
    index.save(force=True)
    assert len(segment_files(tmp_path)) == 2 and first[0] in segment_files(tmp_path)  # the first is never rewritten


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_mostly_dead_segments_are_rewritten_and_compact_leaves_one(tmp_path, kind):
    index = FaissIndex(HashEncoder(), path=str(tmp_path), kind=kind)
    names = [f"d{i}" for i in range(400)]
    add(index, names[:50])
    index.save(force=True)
    add(index, names[50:])
    index.save(force=True)
    assert [p.n for p in index._segments.sealed] == [50, 350]
    index.delete(names[:30] + names[50:100])  # over half of the first segment, a seventh of the second
    index.save()
    assert [p.n for p in index._segments.sealed] == [20, 350] and len(index) == 320
    index.compact()
    assert [p.n for p in index._segments.sealed] == [320] and len(index._segments.dead) == 0
    assert [e["n"] for e in manifest(tmp_path)] == [320] and len(segment_files(tmp_path)) == 1
    reopened = FaissIndex(HashEncoder(), path=str(tmp_path), kind=kind)
    for name in ("d30", "d100", "d399"):
        assert reopened.search(text_of(name), k=1)[0].id == name


def test_folders_written_by_embedkit_0_1_open_and_keep_their_documents(tmp_path):
    gen = write_v1_folder(tmp_path / "old")
    before = {p.name: p.read_bytes() for p in gen.iterdir()}
    index = FaissIndex(HashEncoder(), path=str(tmp_path / "old"))
    assert len(index) == 2 and index.get(["a", "b", "c"])[1].metadata == {"größe": 3}
    assert index.search(text_of("c"), k=1)[0].id == "c"
    assert [h.id for h in index.search("q", k=5, filter={"größe": {"$lt": 2}})] == ["a"]
    add(index, ["new"])
    assert len(FaissIndex(HashEncoder(), path=str(tmp_path / "old"))) == 3
    assert {p.name: p.read_bytes() for p in gen.iterdir()} == before  # the 0.1 files are left as they were


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda gen: np.save(gen / "fids.npy", np.arange(7)), "vectors do not fit"),
        (lambda gen: np.save(gen / "store.npy", np.ones((3, 32))), "store.npy holds float64, not float32"),
        (lambda gen: (gen / "meta.json").write_text("[]"), "embedkit 0.1 index cannot be read"),
        (lambda gen: (gen / "docs.sqlite").write_bytes(b"x" * 1000), "embedkit 0.1 index cannot be read"),
    ],
)
def test_a_damaged_0_1_folder_is_reported(tmp_path, damage, message):
    damage(write_v1_folder(tmp_path / "old"))
    with pytest.raises(CorruptIndexError, match=message):
        FaissIndex(HashEncoder(), path=str(tmp_path / "old"))
    assert not (tmp_path / "old" / "docs.sqlite").exists()


def test_damaged_int8_ranges_are_reported(tmp_path):
    index = FaissIndex(HashEncoder(), path=str(tmp_path), precision="int8")
    add(index, ["a", "b"])
    index.close()
    with sqlite3.connect(tmp_path / "docs.sqlite") as db:
        db.execute("UPDATE info SET value = '[[1, 2]]' WHERE key = 'ranges'")
    with pytest.raises(CorruptIndexError, match=r"docs.sqlite: the int8 ranges do not have shape \(2, 32\)"):
        FaissIndex(HashEncoder(), path=str(tmp_path), precision="int8")


def test_open_checks(tmp_path):
    index = FaissIndex(HashEncoder(), path=str(tmp_path / "idx"), kind="hnsw")
    add(index, ["a"])
    with pytest.raises(ValueError, match="kind='hnsw', precision='float32'; it was opened as kind='flat'"):
        FaissIndex(HashEncoder(), path=str(tmp_path / "idx"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="is not empty and holds no embedkit FAISS index"):
        FaissIndex(HashEncoder(), path=str(tmp_path / "other"))
    with pytest.raises(ValueError, match=r"save\(\) needs a path"):
        FaissIndex(HashEncoder()).save()
    for kwargs, message in [
        ({"kind": "lsh"}, "kind must be one of"),
        ({"precision": "int4"}, "precision must be one of"),
        ({"kind": "hnsw", "ef_search": 0}, "ef_search must be a positive int, got 0"),
        ({"kind": "hnsw", "ef_construction": -1}, "ef_construction must be a positive int"),
        ({"hnsw_m": 2.5}, "hnsw_m must be a positive int"),
    ]:
        with pytest.raises(ValueError, match=message):
            FaissIndex(HashEncoder(), **kwargs)


def test_a_failed_segment_write_keeps_the_previous_ones(tmp_path, monkeypatch):
    index = FaissIndex(HashEncoder(), path=str(tmp_path), kind="hnsw")
    add(index, ["a", "b"])
    index.save(force=True)
    first = segment_files(tmp_path)
    add(index, ["c"])

    def disk_full(*_args):
        raise OSError("No space left on device")

    monkeypatch.setattr(faiss, "write_index", disk_full)  # fault injection: the disk fills up mid-save
    with pytest.raises(OSError, match="No space left"):
        index.save(force=True)
    monkeypatch.undo()
    assert segment_files(tmp_path) == first and not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]
    assert len(FaissIndex(HashEncoder(), path=str(tmp_path), kind="hnsw")) == 3  # the write itself was durable
    index.save(force=True)
    assert len(segment_files(tmp_path)) == 2 and first[0] in segment_files(tmp_path)
