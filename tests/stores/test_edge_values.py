"""One regression test per defect that fault injection found in the stores (issue: stores that hold up)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid

import numpy as np
import pytest
import sqlalchemy as sa
from store_workers import HashEncoder, fill, text_of

from integrations import CorruptIndexError, FaissIndex, FilterError, SQLIndex

STORES = ["faiss-flat-float32", "faiss-hnsw-int8", "faiss-flat-ubinary", "sqlite", "postgres"]


def test_every_backend_has_the_same_lifecycle(make):
    with make() as index:
        fill(index, 4)
        index.save()
    for call in (lambda: index.search("x"), lambda: index.add(["y"]), lambda: len(index), lambda: index.get(["d1"])):
        with pytest.raises(ValueError, match=f"this {type(index).__name__} is closed"):
            call()
    index.close()  # closing twice is fine
    with make() as again:
        assert len(again) == 4


# 1. non-ASCII metadata keys


def test_filters_on_non_ascii_keys(make):
    index = make()
    fill(index, 10, lambda i: {"größe": i, "类别": "书" if i % 2 else "笔"})
    assert {h.id for h in index.search("x", k=10, filter={"größe": {"$gte": 8}})} == {"d8", "d9"}
    assert len(index.search("x", k=10, filter={"类别": "书"})) == 5


def test_sqlite_files_written_before_the_fix_still_filter(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    index = SQLIndex(HashEncoder(), url)
    fill(index, 4, lambda i: {"größe": i})
    index.close()
    with sqlite3.connect(tmp_path / "old.db") as db:  # rewrite as embedkit 0.1 stored it: escaped keys, format 1
        for (doc_id,) in db.execute("SELECT id FROM documents").fetchall():
            db.execute(
                "UPDATE documents SET metadata = ? WHERE id = ?", (json.dumps({"größe": int(doc_id[1:])}), doc_id)
            )
        info = json.loads(db.execute("SELECT info FROM embedkit_meta").fetchone()[0])
        info.pop("format")
        db.execute("UPDATE embedkit_meta SET info = ?", (json.dumps(info),))
    assert "\\u00f6" in sqlite3.connect(tmp_path / "old.db").execute("SELECT metadata FROM documents").fetchone()[0]
    reopened = SQLIndex(HashEncoder(), url)
    assert {h.id for h in reopened.search("x", k=10, filter={"größe": {"$lt": 2}})} == {"d0", "d1"}


# 2. large $in / $nin / $or lists, and short errors


def test_large_in_lists_work_everywhere(make):
    index = make()
    fill(index, 40)
    many = list(range(0, 5000, 2))  # 2,500 values
    assert {h.id for h in index.search("x", k=100, filter={"i": {"$in": many}})} == {f"d{i}" for i in range(0, 40, 2)}
    assert len(index.search("x", k=100, filter={"i": {"$nin": many}})) == 20
    ors = {"$or": [{"i": v} for v in range(1000, 2200)] + [{"i": 3}]}
    assert [h.id for h in index.search("x", k=100, filter=ors)] == ["d3"]
    mixed = {"i": {"$in": ["3", 3.0, True, None, 5]}}  # kinds stay apart: only the numbers match
    assert {h.id for h in index.search("x", k=100, filter=mixed)} == {"d3", "d5"}


def test_deep_filters_and_database_errors_give_short_messages(tmp_path):
    deep: dict = {"i": 1}
    for _ in range(200):
        deep = {"$not": deep}
    url = f"sqlite:///{tmp_path}/e.db"
    index = SQLIndex(HashEncoder(), url)
    fill(index, 3)
    with pytest.raises(FilterError, match="nest at most 32 levels deep") as info:
        index.search("x", filter=deep)
    assert len(str(info.value)) < 200
    with sqlite3.connect(tmp_path / "e.db") as db:  # another program breaks the table under the index
        db.execute("DROP TABLE documents")
    with pytest.raises(RuntimeError, match="search failed: no such table: documents") as info:
        index.search("x", filter={"i": {"$in": list(range(3000))}})
    assert len(str(info.value)) < 400 and "SELECT" not in str(info.value)


# 3. integers outside int64


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_filter_integers_outside_int64_are_refused(make, value):
    index = make()
    fill(index, 3)
    with pytest.raises(FilterError, match="integers must fit in 64 bits"):
        index.search("x", filter={"i": {"$lt": value}})
    assert isinstance(FilterError("x"), ValueError)


# 4. zero and huge vectors


def test_zero_vectors_are_refused_everywhere(make):
    index = make()
    fill(index, 3)
    zero = np.zeros((1, 32), np.float32)
    with pytest.raises(ValueError, match="embedding at index 0 is all zeros"):
        index.add_embeddings(zero, ["z"], ids=["z"])
    with pytest.raises(ValueError, match="all zeros"):
        index.search_by_vector(zero[0])
    assert len(index) == 3 and index.get(["z"]) == []


def test_huge_finite_vectors_keep_their_direction(make):
    index = make()
    fill(index, 5)
    direction = HashEncoder().encode_document(["huge"])[0]
    index.add_embeddings((direction / np.abs(direction).max() * 3e38)[None], ["huge"], ids=["huge"])
    hit = index.search_by_vector(direction, k=1)[0]
    assert hit.id == "huge" and hit.score > 0.99 and np.isfinite(index.get_vectors(["huge"])).all()


# 5. strings no backend can store


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda ix: ix.add(["ok"], ids=["bad\ud800"]), "id at index 0 contains a lone surrogate at position 3"),
        (lambda ix: ix.add(["x", "bad\udfff"]), "text at index 1 contains a lone surrogate"),
        (lambda ix: ix.add(["x"], [{"k\ud800": 1}]), "metadata at index 0 contains a lone surrogate"),
        (lambda ix: ix.add(["x"], [{"k": ["a\x00b"]}]), "metadata at index 0 contains a NUL character at position 1"),
        (lambda ix: ix.add(["x", "y"], [{}, {1: "a"}]), "metadata at index 1 does not survive JSON \\(keys must"),
        (lambda ix: ix.add(["x"], [{"k": (1, 2)}]), "metadata at index 0 does not survive JSON \\(a tuple comes back"),
        (lambda ix: ix.add(["x"], [{"k": float("nan")}]), "metadata at index 0 is not JSON-serializable: Out of range"),
        (lambda ix: ix.add(["x"], [{"k": {1, 2}}]), "metadata at index 0 is not JSON-serializable: set"),
        (lambda ix: ix.update_metadata(["d0"], [{"k": b"x"}]), "metadata at index 0 is not JSON-serializable: bytes"),
        (lambda ix: ix.add(["nul\x00"]), "text at index 0 contains a NUL character at position 3"),
        (lambda ix: ix.add(["x"], ids=["a\x00"]), "id at index 0 contains a NUL"),
        (lambda ix: ix.search("q\ud800"), "search\\(\\) input at index 0 contains a lone surrogate"),
        (lambda ix: ix.delete(["\ud800"]), "id at index 0 contains a lone surrogate"),
    ],
)
def test_unstorable_strings_are_refused_by_every_backend(make, call, message):
    index = make()
    fill(index, 3)
    with pytest.raises(ValueError, match=message):
        call(index)
    assert len(index) == 3
    index.save()  # the store is still whole
    assert len(make()) == 3


def test_metadata_that_is_not_a_dict_is_a_type_error(make):
    index = make()
    fill(index, 3)
    with pytest.raises(TypeError, match="metadata at index 1 must be a dict, got str"):
        index.add(["x", "y"], [{}, "k"])
    assert len(index) == 3


# 6 and 7. saves touch only their own files, and crashed saves are cleaned up


def test_save_leaves_foreign_files_and_cleans_its_own_leftovers(tmp_path):
    folder = tmp_path / "idx"
    index = FaissIndex(HashEncoder(), path=str(folder), kind="hnsw")
    fill(index, 20)
    (folder / "gen-000-mine").mkdir()  # a folder embedkit never created
    (folder / "notes.txt").write_text("keep me")
    dead_pid = _dead_pid()
    (folder / f".tmp-{dead_pid}-00ab.faiss").write_bytes(b"half a segment")
    (folder / f"segment-{dead_pid}-00cd.faiss").write_bytes(b"an orphan")
    (folder / f"snapshot-{dead_pid}-00de.faiss").write_bytes(b"an orphan from before segments")
    (folder / f".tmp-{os.getpid()}-00ef.faiss").write_bytes(b"a live process is writing this")
    index.save(force=True)
    names = set(os.listdir(folder))
    assert {"gen-000-mine", "notes.txt", f".tmp-{os.getpid()}-00ef.faiss"} <= names
    orphans = {f".tmp-{dead_pid}-00ab.faiss", f"segment-{dead_pid}-00cd.faiss", f"snapshot-{dead_pid}-00de.faiss"}
    assert not orphans & names
    assert len([n for n in names if n.startswith("segment-")]) == 1


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_save_to_a_folder_copies_and_refuses_to_overwrite(tmp_path):
    memory = FaissIndex(HashEncoder())
    fill(memory, 5)
    memory.save(str(tmp_path / "a"))
    memory.add([text_of("later")], ids=["later"])  # now durable in the new folder
    assert len(FaissIndex(HashEncoder(), path=str(tmp_path / "a"))) == 6
    with pytest.raises(ValueError, match="already holds a FAISS index"):
        FaissIndex(HashEncoder()).save(str(tmp_path / "a"))


# 8. SQLite table names that differ only in case


def test_sqlite_table_names_differing_in_case_share_one_table(tmp_path):
    url = f"sqlite:///{tmp_path}/c.db"
    upper, lower = SQLIndex(HashEncoder(), url, table="Docs"), SQLIndex(HashEncoder(), url, table="docs")
    fill(upper, 3)
    assert len(lower.search("x", k=10)) == 3
    lower.add([text_of("n")], ids=["n"])
    upper.delete(["d0"])
    assert {h.id for h in upper.search("x", k=10)} == {h.id for h in lower.search("x", k=10)} == {"d1", "d2", "n"}


# 9. reserved and overlong table names


@pytest.mark.parametrize("table", ["embedkit_meta", "EMBEDKIT_log", "sqlite_master", "x" * 64])
def test_reserved_or_overlong_table_names_are_refused(tmp_path, table):
    with pytest.raises(ValueError, match="plain SQL identifier of at most 63"):
        SQLIndex(HashEncoder(), f"sqlite:///{tmp_path}/r.db", table=table)


def test_postgres_63_character_table_names_get_their_own_hnsw_index(pg_url):
    url = pg_url[0]
    names = ["a" * 62 + "1", "a" * 62 + "2"]
    for name in names:
        fill(SQLIndex(HashEncoder(), url, table=name), 3)
    with sa.create_engine(url).connect() as conn:
        for name in names:
            hnsw = conn.execute(
                sa.text("SELECT count(*) FROM pg_indexes WHERE tablename = :t AND indexdef LIKE '%USING hnsw%'"),
                {"t": name},
            ).scalar_one()
            assert hnsw == 1


# 10. corruption gets a clear error that names the file


def _faiss_folder(tmp_path):
    folder = tmp_path / "c"
    index = FaissIndex(HashEncoder(), path=str(folder), kind="hnsw")
    fill(index, 10)
    index.save(force=True)
    index.close()
    return folder


def _sql(folder, statement, *args):
    with sqlite3.connect(folder / "docs.sqlite") as db:
        db.execute(statement, args)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "docs.sqlite").write_bytes(b"not sqlite" * 500), "docs.sqlite: not a usable SQLite database"),
        (
            lambda f: _sql(f, "UPDATE info SET value = '[]' WHERE key = 'config'"),
            "docs.sqlite: the index settings are damaged",
        ),
        (
            lambda f: _sql(f, "UPDATE info SET value = '{' WHERE key = 'config'"),
            "docs.sqlite: info 'config' is not valid JSON",
        ),
    ],
)
def test_faiss_corrupt_docstore_is_reported(tmp_path, damage, message):
    folder = _faiss_folder(tmp_path)
    damage(folder)
    with pytest.raises(CorruptIndexError, match=message):
        FaissIndex(HashEncoder(), path=str(folder), kind="hnsw")


def test_faiss_corrupt_rows_are_reported_with_their_id(tmp_path):
    folder = _faiss_folder(tmp_path)
    _sql(folder, "UPDATE docs SET metadata = '{oops' WHERE id = 'd3'")
    index = FaissIndex(HashEncoder(), path=str(folder), kind="hnsw")
    with pytest.raises(CorruptIndexError, match="docs.sqlite: the metadata of document 'd3' is not a JSON object"):
        index.get(["d3"])
    _sql(folder, "UPDATE bodies SET code = x'00' WHERE fid = (SELECT fid FROM docs WHERE id = 'd4')")
    with pytest.raises(CorruptIndexError, match="docs.sqlite: the vector of document 'd4' has 1 bytes, not 128"):
        FaissIndex(HashEncoder(), path=str(folder), kind="hnsw", precision="float32").get_vectors(["d4"])


@pytest.mark.parametrize("damage", ["garbage", "missing"])
def test_faiss_damaged_segment_is_rebuilt_from_the_docstore(tmp_path, caplog, damage):
    folder = _faiss_folder(tmp_path)
    before = [h.id for h in FaissIndex(HashEncoder(), path=str(folder), kind="hnsw").search("text of d2", k=3)]
    (segment,) = [p for p in folder.iterdir() if p.name.startswith("segment-")]
    if damage == "missing":
        segment.unlink()
    else:
        segment.write_bytes(b"garbage")
    index = FaissIndex(HashEncoder(), path=str(folder), kind="hnsw")
    assert any(segment.name in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    assert [h.id for h in index.search("text of d2", k=3)] == before and len(index) == 10


def test_sqlite_corrupt_rows_are_reported_with_the_table_and_id(tmp_path):
    url = f"sqlite:///{tmp_path}/x.db"
    fill(SQLIndex(HashEncoder(), url), 5)
    with sqlite3.connect(tmp_path / "x.db") as db:
        db.execute("UPDATE documents SET embedding = x'0102' WHERE id = 'd2'")
    with pytest.raises(CorruptIndexError, match="table 'documents' at sqlite:///.*: the embedding of document 'd2'"):
        SQLIndex(HashEncoder(), url).search("x")
    with sqlite3.connect(tmp_path / "x.db") as db:
        db.execute("UPDATE embedkit_meta SET info = '[]'")
    with pytest.raises(CorruptIndexError, match="its settings in embedkit_meta are damaged"):
        SQLIndex(HashEncoder(), url)


# 11. deletes do not inflate later searches (the cost is measured in benchmarks/store_scale.py)


def test_deleted_rows_stay_out_of_results_without_a_rebuild(make):
    index = make()
    ids = fill(index, 200)
    index.delete(ids[:20])
    for doc_id in ids[:3] + ids[100:103]:
        hits = index.search(text_of(doc_id), k=5)
        assert all(int(h.id[1:]) >= 20 for h in hits) and len(hits) == 5
        assert (hits[0].id == doc_id) == (int(doc_id[1:]) >= 20)


# 12. PostgreSQL search runs read-only, with its settings applied per connection


def test_postgres_search_is_one_statement_in_autocommit(pg_url, monkeypatch):
    import psycopg

    index = SQLIndex(HashEncoder(), pg_url[0], table=f"t_{uuid.uuid4().hex[:12]}")
    fill(index, 20)
    index.search("warm the pool up and estimate the filter", k=5, filter={"i": {"$lt": 10}})
    sent = []
    execute = psycopg.Connection.execute

    def recording(self, query, *args, **kwargs):
        sent.append((str(query), self.autocommit, self.info.transaction_status))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", recording)
    hits = index.search("text of d1", k=5, filter={"i": {"$lt": 10}})
    assert [h.id for h in hits][:1] == ["d1"] and len(hits) == 5
    (query, autocommit, status), *rest = sent
    assert rest == [] and query.lstrip().upper().startswith("SELECT") and autocommit
    assert status == psycopg.pq.TransactionStatus.IDLE  # no BEGIN: the SELECT is its own read-only snapshot
    with index.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW hnsw.iterative_scan").scalar() == "strict_order"


@pytest.mark.slow
def test_postgres_picks_hnsw_or_an_exact_scan_by_selectivity_and_both_are_right(pg_url):
    index = SQLIndex(HashEncoder(), pg_url[0], table=f"t_{uuid.uuid4().hex[:12]}")
    rng = np.random.default_rng(9)
    vectors = rng.normal(size=(3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"d{i}" for i in range(3000)]
    index.add_embeddings(vectors, ids, [{"half": i % 2, "tag": f"t{i % 300}"} for i in range(3000)], ids)
    with index.engine.begin() as conn:  # the planner's statistics, which its estimates come from
        conn.exec_driver_sql(f'ANALYZE "{index.table_name}"')
    query = vectors[7]
    for flt, allowed, exact in (({"tag": "t7"}, lambda i: i % 300 == 7, True), ({"half": 1}, lambda i: i % 2, False)):
        hits = index.search_by_vector(query, k=10, filter=flt)
        assert [key[2] for key in index._pg._statements if key[0] and json.loads(key[0])[1] == list(flt)[0]] == [exact]
        truth = sorted((i for i in range(3000) if allowed(i)), key=lambda i: -float(vectors[i] @ query))[:10]
        assert len(hits) == 10 and all(allowed(int(h.id[1:])) for h in hits)
        assert len({h.id for h in hits} & {f"d{i}" for i in truth}) >= (10 if exact else 8)


# 13. two threads encoding at once keep the caller's torch thread count


def test_parallel_encodes_keep_the_torch_thread_count(tiny_model):
    import torch

    before = torch.get_num_threads()
    texts = [f"sentence number {i}" for i in range(64)]
    threads = [threading.Thread(target=tiny_model.encode, args=(texts,), kwargs={"batch_size": 4}) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.get_num_threads() == before


# Filtered search past the exact-scan threshold: bitmap selectors, and the flat kind's masked product


@pytest.mark.parametrize(
    "kind, precision", [("flat", "float32"), ("hnsw", "float32"), ("flat", "int8"), ("ivf", "ubinary")]
)
def test_filtered_search_through_selectors_is_exact_in_k(monkeypatch, kind, precision):
    import integrations.faiss.search

    monkeypatch.setattr(integrations.faiss.search, "FEW", 8)
    index = FaissIndex(HashEncoder(), kind=kind, precision=precision)
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(600, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"d{i}" for i in range(600)]
    index.add_embeddings(vectors, ids, [{"g": i % 10} for i in range(600)], ids)
    index.delete(ids[:30])
    query = vectors[123]
    for flt, allowed in (({"g": {"$lt": 7}}, lambda i: i % 10 < 7), ({"g": 3}, lambda i: i % 10 == 3)):
        hits = index.search_by_vector(query, k=10, filter=flt)
        assert len(hits) == 10 and all(allowed(int(h.id[1:])) and int(h.id[1:]) >= 30 for h in hits)
        if precision == "float32" and kind == "flat":
            truth = sorted((i for i in range(30, 600) if allowed(i)), key=lambda i: -float(vectors[i] @ query))[:10]
            assert [h.id for h in hits] == [f"d{i}" for i in truth]
            assert abs(hits[0].score - float(vectors[truth[0]] @ query)) < 1e-5


def test_the_one_pass_metadata_check_gives_what_the_dict_by_dict_check_gives():
    """A batch of flat dicts is serialized and checked in one pass; anything it cannot vouch for goes dict
    by dict, so the stored text, and every refusal with its position, stay the same (keys that hold a NUL
    or a brace included)."""
    import random

    from integrations._shared.validation import flat_metadata, metadata

    rng = random.Random(5)
    values = [0, -7, 2**70, 1.5, True, False, None, "", "é", "a{b", "[x]", "\x00", "back\\u0000slash", 1e300]
    tricky = [(1, 2), {"k": 1}, [1], float("nan"), {1: "x"}, "\ud800", object(), [{"k": 1}, {"j": 2}], {"a": {}}]

    def keys(j):  # mostly plain, now and then one that is not a str or holds a NUL or a brace
        return [f"f{j}"] * 30 + [j, None, True, 1.5, f"f{j}\x00", f"f{j}{{", f"f{j}\x00{{"]

    vouched = 0
    for _ in range(800):
        batch = [
            {rng.choice(keys(j)): rng.choice(values + tricky * (rng.random() < 0.1)) for j in range(rng.randrange(4))}
            for _ in range(rng.randrange(1, 5))
        ]
        fast = flat_metadata(batch)
        try:
            slow = [metadata(m, i) for i, m in enumerate(batch)]
        except Exception:  # noqa: BLE001 - a refusal: the one-pass check must not vouch for the batch
            assert fast is None
            continue
        assert fast is None or fast == slow
        vouched += fast is not None
    assert vouched > 100
