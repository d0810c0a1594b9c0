"""Backend-specific behaviour: SQLite across processes, PostgreSQL with and without pgvector, FAISS files."""

from __future__ import annotations

import logging
import multiprocessing

import numpy as np
import pytest
import sqlalchemy as sa

from integrations import SQLIndex
from integrations.sql.postgres import index_name


def _add_from_process(model_dir: str, url: str, worker: int, n: int) -> None:
    from embedkit import SentenceTransformer

    index = SQLIndex(SentenceTransformer(model_dir, device="cpu"), url)
    for j in range(n):
        index.add([f"worker {worker} text {j}"], [{"worker": worker}], ids=[f"w{worker}-{j}"])


@pytest.mark.slow
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
    assert index_name("hnsw_check") in plan
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
    with pytest.raises(TypeError, match="encoder must have model_name, prompts, encode_query"):
        SQLIndex(object(), f"sqlite:///{tmp_path}/x.db")


def test_sqlite_cache_sees_writes_made_without_embedkit(tmp_path, tiny_model):
    url = f"sqlite:///{tmp_path}/ext.db"
    index = SQLIndex(tiny_model, url)
    index.add(["alpha", "beta", "gamma"], [{"n": 1}, {"n": 2}, {"n": 3}], ids=["a", "b", "c"])
    assert len(index.search("alpha", k=10, filter={"n": {"$gte": 1}})) == 3
    with sa.create_engine(url).begin() as conn:  # another program edits the table directly
        conn.exec_driver_sql("DELETE FROM documents WHERE id = 'b'")
        conn.exec_driver_sql("UPDATE documents SET metadata = '{\"n\": 9}' WHERE id = 'c'")
    assert {h.id for h in index.search("alpha", k=10)} == {"a", "c"}
    assert [h.id for h in index.search("alpha", k=10, filter={"n": 9})] == ["c"]


def test_postgres_database_without_the_extension_yet(pg_url, tiny_model):
    """SQLIndex creates the extension itself; connections made before that still search in binary."""
    url, server = pg_url
    server.psql("DROP DATABASE IF EXISTS fresh; CREATE DATABASE fresh;")
    fresh = sa.engine.make_url(url).set(database="fresh").render_as_string(hide_password=False)
    index = SQLIndex(tiny_model, fresh)
    assert index.uses_pgvector
    index.add(["alpha text", "beta text"], [{"k": "a"}, {"k": "b"}], ids=["a", "b"])
    assert [h.id for h in index.search("alpha text", k=1)] == ["a"]
    assert [h.id for h in index.search("alpha text", k=2, filter={"k": "b"})] == ["b"]
    index.close()


def test_sqlite_change_log_stays_short_and_caches_behind_it_reload(tmp_path, tiny_model, monkeypatch):
    from integrations.sql import sqlite_changes

    monkeypatch.setattr(sqlite_changes, "KEEP", 5)
    url = f"sqlite:///{tmp_path}/log.db"
    writer, reader = SQLIndex(tiny_model, url), SQLIndex(tiny_model, url)
    writer.add([f"text {i}" for i in range(4)], [{"v": 0} for _ in range(4)], ids=[f"d{i}" for i in range(4)])
    assert len(reader.search("text", k=10, filter={"v": 0})) == 4  # the reader's caches now hold version 0
    for round_ in range(1, 8):  # 28 upserts: the log is pruned several times past the reader
        for i in range(4):
            writer.add([f"text {i} v{round_}"], [{"v": round_}], ids=[f"d{i}"])
    with sa.create_engine(url).connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM embedkit_log").scalar() <= 2 * 5 + 1
    assert {h.text for h in reader.search("text", k=10)} == {f"text {i} v7" for i in range(4)}
    assert reader.search("text", k=10, filter={"v": 0}) == []
    assert len(reader.search("text", k=10, filter={"v": 7})) == 4


def test_postgres_bulk_load_builds_hnsw_once_and_copy_keeps_upserts(pg_url, tiny_model):
    from integrations.sql.postgres import hnsw_indexes

    url, _ = pg_url
    index = SQLIndex(tiny_model, url, table="bulk_check")
    index.add(["an early text"], [{"v": 0}], ids=["0"])
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(1500, 32)).astype(np.float32)
    ids = [str(i) for i in range(1500)]  # "0" exists: the COPY path must replace it
    with index.bulk_load(maintenance_work_mem="64MB"):
        with index.engine.connect() as conn:
            assert hnsw_indexes(conn, "bulk_check") == []  # dropped for the load
        index.add_embeddings(vectors, [f"t{i}" for i in ids], [{"v": 1} for _ in ids], ids)
        assert index.search_by_vector(vectors[5], k=1)[0].id == "5"  # exact scan meanwhile
    with index.engine.connect() as conn:
        assert hnsw_indexes(conn, "bulk_check") == [index_name("bulk_check")]
    assert len(index) == 1500 and index.get(["0"])[0].text == "t0" and index.get(["0"])[0].metadata == {"v": 1}
    assert index.search_by_vector(vectors[42], k=1)[0].id == "42"
    index.close()
