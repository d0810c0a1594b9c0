"""Backend-specific behaviour: SQLite across processes, PostgreSQL with and without pgvector, FAISS files."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os

import numpy as np
import pytest
import sqlalchemy as sa

from integrations import FaissIndex, SQLIndex


def _add_from_process(model_dir: str, url: str, worker: int, n: int) -> None:
    from embedkit import SentenceTransformer

    index = SQLIndex(SentenceTransformer(model_dir, device="cpu"), url)
    for j in range(n):
        index.add([f"worker {worker} text {j}"], [{"worker": worker}], ids=[f"w{worker}-{j}"])


def test_sqlite_several_processes_add_concurrently(tmp_path, prompt_model_dir, tiny_model):
    url = f"sqlite:///{tmp_path}/shared.db"
    SQLIndex(tiny_model, url)  # create the schema once
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_from_process, args=(prompt_model_dir, url, w, 15)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    index = SQLIndex(tiny_model, url)
    assert len(index) == 45
    assert len(index.search("worker text", k=100, filter={"worker": 2})) == 15
    with sa.create_engine(url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_sqlite_cache_sees_writes_from_another_instance(tmp_path, tiny_model):
    url = f"sqlite:///{tmp_path}/d.db"
    a, b = SQLIndex(tiny_model, url), SQLIndex(tiny_model, url)
    a.add(["first"], ids=["1"])
    assert [h.id for h in b.search("first", k=5)] == ["1"]
    b.add(["second"], ids=["2"])
    b.delete(["1"])
    assert [h.id for h in a.search("first", k=5)] == ["2"]


def test_postgres_uses_pgvector_hnsw(pg_url, tiny_model):
    url, _ = pg_url
    index = SQLIndex(tiny_model, url, table="hnsw_check")
    assert index.uses_pgvector
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 32)).astype(np.float32)
    index.add_embeddings(
        vectors, [f"t{i}" for i in range(300)], [{"i": i} for i in range(300)], [str(i) for i in range(300)]
    )
    with sa.create_engine(url).connect() as conn:
        column_type = conn.execute(
            sa.text(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = 'hnsw_check'::regclass AND attname = 'embedding'"
            )
        ).scalar_one()
        indexdef = conn.execute(
            sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = 'hnsw_check' AND indexdef LIKE '%USING hnsw%'")
        ).scalar_one()
        conn.execute(sa.text("SET enable_seqscan = off"))
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                sa.text("EXPLAIN SELECT id FROM hnsw_check ORDER BY embedding <=> CAST(:q AS vector) LIMIT 5"),
                {"q": str(vectors[0].tolist())},
            )
        )
    assert column_type == "vector(32)"
    assert "vector_cosine_ops" in indexdef
    assert "hnsw_check_embedding_hnsw" in plan
    assert index.search_by_vector(vectors[3], k=1)[0].id == "3"


def test_postgres_without_pgvector_falls_back(pg_url, tiny_model, caplog):
    """A role that may not create the (untrusted) vector extension, in a database without it."""
    url, server = pg_url
    server.psql("DROP DATABASE IF EXISTS novector; DROP ROLE IF EXISTS limited;")
    server.psql("CREATE ROLE limited LOGIN; CREATE DATABASE novector OWNER limited;")
    limited = sa.engine.make_url(url).set(username="limited", database="novector").render_as_string(hide_password=False)
    with caplog.at_level(logging.WARNING, logger="integrations.sql"):
        index = SQLIndex(tiny_model, limited)
    assert not index.uses_pgvector
    assert any("pgvector is not available" in r.getMessage() for r in caplog.records)
    index.add(["alpha text", "beta text"], [{"k": "a"}, {"k": "b"}], ids=["a", "b"])
    assert [h.id for h in index.search("alpha text", k=1, filter={"k": {"$in": ["a", "b"]}})] == ["a"]
    assert [h.id for h in index.search("alpha text", k=5, filter={"k": "b"})] == ["b"]
    index.close()


def test_sql_rejects_bad_urls_and_tables(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="must be a SQLAlchemy URL"):
        SQLIndex(tiny_model, "docs.db")
    with pytest.raises(ValueError, match="plain SQL identifier"):
        SQLIndex(tiny_model, f"sqlite:///{tmp_path}/x.db", table="docs; DROP TABLE x")
    with pytest.raises(TypeError, match="encoder must have encode_query"):
        SQLIndex(object(), f"sqlite:///{tmp_path}/x.db")


# ----------------------------------------------------------------- FAISS files


@pytest.fixture
def saved_faiss(tmp_path, tiny_model):
    index = FaissIndex(tiny_model, path=str(tmp_path / "idx"), kind="hnsw")
    index.add(["one", "two", "three"], [{"n": 1}, {"n": 2}, {"n": 3}], ids=["1", "2", "3"])
    index.save()
    return tmp_path / "idx"


def _generation(path):
    return path / (path / "CURRENT").read_text()


def test_faiss_files_hold_no_pickle(saved_faiss):
    files = sorted(p.name for p in _generation(saved_faiss).iterdir())
    assert files == ["docs.sqlite", "fids.npy", "index.faiss", "meta.json", "store.npy"]
    for name in ("fids.npy", "store.npy"):
        np.load(_generation(saved_faiss) / name, allow_pickle=False)  # raises if an object array was written
    assert json.loads((_generation(saved_faiss) / "meta.json").read_text())["dimension"] == 32


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda g: (g / "index.faiss").write_bytes(b"garbage"), "corrupt FAISS index at .*RuntimeError"),
        (lambda g: (g / "store.npy").unlink(), r"corrupt FAISS index at .*missing \['store.npy'\]"),
        (
            lambda g: (g / "docs.sqlite").write_bytes(b"not sqlite at all" * 100),
            "corrupt FAISS index at .*DatabaseError",
        ),
        (lambda g: np.save(g / "fids.npy", np.arange(7)), "the vectors, ids and docstore disagree"),
        (lambda g: (g / "meta.json").write_text("{"), "corrupt FAISS index at .*"),
        (lambda g: (g.parent / "CURRENT").write_text("gen-missing"), r"missing \["),
    ],
)
def test_faiss_corrupt_files_are_reported(saved_faiss, tiny_model, damage, message):
    damage(_generation(saved_faiss))
    with pytest.raises(ValueError, match=message):
        FaissIndex(tiny_model, path=str(saved_faiss), kind="hnsw")


def test_faiss_failed_save_keeps_the_previous_generation(saved_faiss, tiny_model, monkeypatch):
    import faiss

    index = FaissIndex(tiny_model, path=str(saved_faiss), kind="hnsw")
    index.add(["four"], ids=["4"])

    def disk_full(*_args):
        raise OSError("No space left on device")

    monkeypatch.setattr(faiss, "write_index", disk_full)
    with pytest.raises(OSError, match="No space left"):
        index.save()
    monkeypatch.undo()
    assert not [p for p in os.listdir(saved_faiss) if p.startswith(".tmp-")]
    assert len(FaissIndex(tiny_model, path=str(saved_faiss), kind="hnsw")) == 3
    index.save()
    assert len(FaissIndex(tiny_model, path=str(saved_faiss), kind="hnsw")) == 4
    assert len([p for p in os.listdir(saved_faiss) if p.startswith("gen-")]) == 1


def test_faiss_open_checks(saved_faiss, tiny_model, tmp_path):
    with pytest.raises(ValueError, match="kind='hnsw', precision='float32'; it was opened as kind='flat'"):
        FaissIndex(tiny_model, path=str(saved_faiss))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="holds no embedkit FAISS index"):
        FaissIndex(tiny_model, path=str(tmp_path / "other"))
    with pytest.raises(ValueError, match="save\\(\\) needs a path"):
        FaissIndex(tiny_model).save()
    with pytest.raises(ValueError, match="kind must be one of"):
        FaissIndex(tiny_model, kind="lsh")
    with pytest.raises(ValueError, match="precision must be one of"):
        FaissIndex(tiny_model, precision="int4")
