"""FaissIndex folders: durable writes, several instances, snapshots, and folders written by embedkit 0.1."""

from __future__ import annotations

import os
import sqlite3
import threading

import faiss
import numpy as np
import pytest
from store_workers import HashEncoder, text_of, write_v1_folder

from integrations import CorruptIndexError, FaissIndex


def add(index, names, **metadata):
    index.add([text_of(n) for n in names], [dict(metadata, name=n) for n in names], ids=list(names))


def snapshot_files(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith("snapshot-"))


def test_every_write_is_durable_without_save(tmp_path):
    a = FaissIndex(HashEncoder(), path=str(tmp_path), kind="hnsw")
    add(a, ["x", "y", "z"])
    a.delete(["y"])
    b = FaissIndex(HashEncoder(), path=str(tmp_path), kind="hnsw")  # a was neither saved nor closed
    assert len(b) == 2 and [h.id for h in b.search(text_of("z"), k=1)] == ["z"]
    assert snapshot_files(tmp_path) == []


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
    assert len(snapshot_files(tmp_path)) == 1 and not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]


def test_save_skips_small_changes_and_reopen_replays_them(tmp_path):
    index = FaissIndex(HashEncoder(), path=str(tmp_path), kind="hnsw")
    add(index, [f"d{i}" for i in range(30)])
    index.save()
    first = snapshot_files(tmp_path)
    add(index, ["late-1", "late-2"])
    index.delete(["d0"])
    index.save()  # 3 changes: replaying them on open costs less than a new snapshot
    assert snapshot_files(tmp_path) == first
    reopened = FaissIndex(HashEncoder(), path=str(tmp_path), kind="hnsw")
    assert len(reopened) == 31 and reopened.search(text_of("late-2"), k=1)[0].id == "late-2"
    assert "d0" not in {h.id for h in reopened.search(text_of("d0"), k=31)}
    index.save(force=True)
    assert snapshot_files(tmp_path) != first and len(snapshot_files(tmp_path)) == 1


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_heavy_deletes_compact_and_ivf_retrains_as_it_grows(tmp_path, kind):
    index = FaissIndex(HashEncoder(), path=str(tmp_path), kind=kind)
    names = [f"d{i}" for i in range(400)]
    add(index, names[:50])
    add(index, names[50:])  # IVF trained on 50 rows retrains at 400
    index.delete(names[:150])  # over a quarter dead
    index.save(force=True)  # compacts
    assert index._index.ntotal == 250 and len(index._dead) == 0
    index.delete(names[150:300])  # over half dead: the write itself compacts
    assert index._index.ntotal == 100 and len(index) == 100
    reopened = FaissIndex(HashEncoder(), path=str(tmp_path), kind=kind)
    for name in ("d300", "d399"):
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


def test_a_failed_snapshot_keeps_the_previous_one(tmp_path, monkeypatch):
    index = FaissIndex(HashEncoder(), path=str(tmp_path), kind="hnsw")
    add(index, ["a", "b"])
    index.save(force=True)
    first = snapshot_files(tmp_path)
    add(index, ["c"])

    def disk_full(*_args):
        raise OSError("No space left on device")

    monkeypatch.setattr(faiss, "write_index", disk_full)  # fault injection: the disk fills up mid-save
    with pytest.raises(OSError, match="No space left"):
        index.save(force=True)
    monkeypatch.undo()
    assert snapshot_files(tmp_path) == first and not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]
    assert len(FaissIndex(HashEncoder(), path=str(tmp_path), kind="hnsw")) == 3  # the write itself was durable
    index.save(force=True)
    assert len(snapshot_files(tmp_path)) == 1 and snapshot_files(tmp_path) != first
