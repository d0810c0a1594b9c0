"""Filter postings select exactly the rows the JSON evaluator selects, on randomized tables and filters,
through adds, upserts, metadata updates and deletes, in a FaissIndex docstore and in SQLIndex's SQLite
table (whose triggers also follow writers other than embedkit); a docstore or table from before postings
gets them (and a docstore keeps its keyword index in step without triggers)."""

from __future__ import annotations

import random
import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from store_workers import HashEncoder, text_of

from integrations import FaissIndex, SQLIndex
from integrations.filters.parse import parse_filter
from integrations.sql import sqlite_changes

FIELDS = ["a", "b", "c", "dotted.name"]
SCALARS = [
    0,
    1,
    -1,
    2,
    7,
    2**40,
    -(2**63),
    2**63 - 1,
    0.5,
    1.0,
    -2.5,
    1e300,
    True,
    False,
    None,
    "",
    "a",
    "b",
    "é",
    "10",
]
STORED = [*SCALARS, 2**70, [1, "a", None], [True, 1.0, [2]], [], {"x": 1}, ["b", "b", 2, 2.0]]


def random_metadata(rng: random.Random) -> dict:
    return {f: rng.choice(STORED) for f in FIELDS if rng.random() < 0.7}


def random_filter(rng: random.Random, depth: int = 0) -> dict:
    roll = rng.random()
    if depth < 3 and roll < 0.25:
        return {rng.choice(["$and", "$or"]): [random_filter(rng, depth + 1) for _ in range(rng.randrange(1, 4))]}
    if depth < 3 and roll < 0.32:
        return {"$not": random_filter(rng, depth + 1)}
    field, op = (
        rng.choice(FIELDS),
        rng.choice(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"] * 2 + ["$exists", "$contains"]),
    )
    if op in ("$in", "$nin"):
        return {field: {op: rng.sample(SCALARS, rng.randrange(1, 5))}}
    if op == "$exists":
        return {field: {op: rng.random() < 0.5}}
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return {field: {op: rng.choice([v for v in SCALARS if v is not None and not isinstance(v, bool)])}}
    return {field: {op: rng.choice(SCALARS)}} if rng.random() < 0.8 else {field: rng.choice(SCALARS)}


def both(index, flt: dict) -> tuple[list[int], list[int]]:
    """(row keys through the postings, row keys through the JSON evaluator) of ``flt``."""
    node, nothing = parse_filter(flt), np.zeros(0, np.int64)
    if isinstance(index, SQLIndex):  # after=0: the JSON evaluator over every row above rowid 0
        with index.engine.connect() as conn:
            through, parsed = (
                sqlite_changes.matching(conn, index.table, index._key, node, index._where(node), after, nothing)
                for after in (None, 0)
            )
    else:
        store = index._store
        with store.read():
            through = store.matching(node, None, nothing)
            parsed = store.matching(node, None, nothing, postings=False)
    return np.sort(through).tolist(), np.sort(parsed).tolist()


def open_store(store: str, tmp_path):
    if store == "faiss":
        return FaissIndex(HashEncoder(), path=str(tmp_path), chunk_tokens=None)
    return SQLIndex(HashEncoder(), f"sqlite:///{tmp_path}/kb.db", chunk_tokens=None)


@pytest.mark.slow
@pytest.mark.parametrize("store", ["faiss", "sqlite"])
@pytest.mark.parametrize("seed", range(4))
def test_postings_select_what_the_json_evaluator_selects(tmp_path, store, seed):
    rng = random.Random(seed)
    index = open_store(store, tmp_path)
    ids = [f"d{i}" for i in range(300)]
    index.add([text_of(i) for i in ids], [random_metadata(rng) for _ in ids], ids=ids)
    index.add([text_of(i) for i in ids[:40]], [random_metadata(rng) for _ in range(40)], ids=ids[:40])  # upserts
    index.update_metadata(ids[40:80], [random_metadata(rng) for _ in range(40)])
    index.delete(ids[80:110])
    checked, nonempty = 0, 0
    for _ in range(400):
        flt = random_filter(rng)
        through, parsed = both(index, flt)
        assert through == parsed, flt
        checked += 1
        nonempty += 0 < len(parsed) < len(index)
    assert nonempty > checked // 3  # most filters select some rows and not others


@pytest.mark.parametrize("store", ["faiss", "sqlite"])
def test_filtered_searches_through_postings_match_a_python_check(tmp_path, store):
    index = open_store(store, tmp_path)
    ids = [f"d{i}" for i in range(500)]
    meta = [{"group": i % 100, "tag": ["x", "y"][i % 2], "score": i / 10} for i in range(500)]
    index.add([text_of(i) for i in ids], meta, ids=ids)
    hits = index.search("q", k=500, filter={"group": 7, "score": {"$gte": 20}})
    assert sorted(h.id for h in hits) == sorted(i for i, m in zip(ids, meta) if m["group"] == 7 and m["score"] >= 20)
    hits = index.search("q", k=500, filter={"$or": [{"group": {"$in": [1, 2]}}, {"tag": {"$ne": "x"}}]})
    assert sorted(h.id for h in hits) == sorted(i for i, m in zip(ids, meta) if m["group"] in (1, 2) or m["tag"] != "x")


def test_a_docstore_from_before_postings_gets_them_on_open(tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(Path(__file__).parent.parent / "fixtures" / "before-segments" / "hnsw-float32", folder)
    with sqlite3.connect(folder / "docs.sqlite") as db:
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'postings'").fetchone() == (0,)
    index = FaissIndex(HashEncoder(), path=str(folder), kind="hnsw")
    for flt in ({"g": 3}, {"i": {"$gte": 1000}}, {"$not": {"g": {"$in": [1, 2]}}}):
        through, parsed = both(index, flt)
        assert through == parsed and through
    with sqlite3.connect(folder / "docs.sqlite") as db:
        assert db.execute("SELECT count(*) FROM postings").fetchone()[0] == 2 * len(index)
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").fetchone() == (0,)
    # its keyword index, which triggers kept in step, is now kept by the writes themselves
    assert [h.id for h in index.search("d9", k=3, mode="keyword")] == ["d9"]
    index.delete(["d9"])
    index.add(["a wombat"], [{"g": 3}], ids=["fresh"])
    assert index.search("d9", k=3, mode="keyword") == []
    assert [h.id for h in index.search("wombat", k=3, mode="keyword", filter={"g": 3})] == ["fresh"]


def test_sqlite_postings_follow_writers_other_than_embedkit(tmp_path):
    index = open_store("sqlite", tmp_path)
    ids = [f"d{i}" for i in range(60)]
    index.add([text_of(i) for i in ids], [{"g": i % 3, "tags": ["x", i]} for i in range(60)], ids=ids)
    with sqlite3.connect(tmp_path / "kb.db") as db:  # another program edits the table with plain SQL
        db.execute("UPDATE documents SET metadata = '{\"g\": 7, \"tags\": [\"y\"]}' WHERE id IN ('d0', 'd1')")
        db.execute("DELETE FROM documents WHERE id = 'd3'")
        db.execute(
            "INSERT INTO documents (id, text, metadata, embedding) SELECT 'new', text, '{\"g\": 7}', embedding "
            "FROM documents WHERE id = 'd4'"
        )
    for flt in ({"g": 7}, {"g": 0}, {"tags": {"$contains": "x"}}, {"tags": {"$contains": "y"}}, {"$not": {"g": 0}}):
        through, parsed = both(index, flt)
        assert through == parsed and through, flt
    hits = index.search("q", k=100, filter={"g": 7})
    assert sorted(h.id for h in hits) == ["d0", "d1", "new"]


def test_a_sqlite_table_from_before_postings_gets_them_on_open(tmp_path):
    shutil.copy(Path(__file__).parent.parent / "fixtures" / "before-house-plan" / "sql.db", tmp_path / "kb.db")
    with sqlite3.connect(tmp_path / "kb.db") as db:
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'embedkit_postings%'").fetchone() == (0,)
        rows = db.execute("SELECT count(*) FROM documents").fetchone()[0]
    index = open_store("sqlite", tmp_path)
    assert len(index) == rows
    fields = set()
    for record in index.get(limit=1000):
        fields |= record.metadata.keys()
    checked = 0
    for field in sorted(fields):
        for flt in ({field: {"$exists": True}}, {"$not": {field: {"$exists": True}}}):
            through, parsed = both(index, flt)
            assert through == parsed, flt
            checked += len(through)
    assert checked == len(fields) * rows  # each field: every row is on one side


def test_sqlite_bulk_writes_and_plain_sql_keep_the_keyword_index_and_postings_exact(tmp_path):
    """embedkit's writes index new rows in one go at the end; other programs' writes go through the
    triggers: FTS5's own integrity check and the JSON evaluator agree with both, also on a table from
    before, whose insert trigger is made again with the condition."""
    shutil.copy(Path(__file__).parent.parent / "fixtures" / "before-house-plan" / "sql.db", tmp_path / "kb.db")
    rng = random.Random(9)
    index = open_store("sqlite", tmp_path)
    with sqlite3.connect(tmp_path / "kb.db") as db:
        made = db.execute("SELECT sql FROM sqlite_master WHERE name = 'documents_embedkit_fts_ai'").fetchone()[0]
    assert "embedkit_bulk" in made
    for step in range(12):
        ids = [f"d{rng.randrange(200)}" for _ in range(30)]
        ids = list(dict.fromkeys(ids))
        texts = [f"{text_of(i)} t{step}x{n}" for n, i in enumerate(ids)]  # a word no other row has
        index.add(texts, [random_metadata(rng) for _ in ids], ids=ids)
        index.delete(ids[:3])
        with sqlite3.connect(tmp_path / "kb.db") as db:  # another program writes between embedkit's writes
            db.execute(
                "INSERT INTO documents (id, text, metadata, embedding) SELECT ?, 'plain' || ?, '{\"a\": 1}', "
                "embedding FROM documents LIMIT 1",
                (f"plain{step}", step),
            )
            db.execute("UPDATE documents SET text = text || ' edited' WHERE id = ?", (ids[5],))
    with sqlite3.connect(tmp_path / "kb.db") as db:
        db.execute("INSERT INTO embedkit_fts_documents (embedkit_fts_documents) VALUES ('integrity-check')")
        assert db.execute("SELECT count(*) FROM embedkit_bulk").fetchone() == (0,)
        words = {}  # each row's own word -> its rowid: the keyword index must find exactly that row
        for rowid, text in db.execute("SELECT rowid, text FROM documents"):
            words.update((w, rowid) for w in text.split() if re.fullmatch(r"t\d+x\d+|plain\d+", w))
        assert len(words) > 150
        for word, rowid in words.items():
            found = db.execute("SELECT rowid FROM embedkit_fts_documents WHERE embedkit_fts_documents MATCH ?", (word,))
            assert found.fetchall() == [(rowid,)], word
    for _ in range(100):
        flt = random_filter(rng)
        through, parsed = both(index, flt)
        assert through == parsed, flt
    assert [h.id for h in index.search("plain3", k=5, mode="keyword")] == ["plain3"]
    index.close()
