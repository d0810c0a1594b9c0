"""Ray Data on a real local cluster (2 CPUs, CPU actors): parity with encode, Parquet, pgvector and FAISS
outputs that answer searches, every row once after an actor is killed, and the failing row's id."""

from __future__ import annotations

import os

import numpy as np
import pytest

ray = pytest.importorskip("ray")  # the ray extra; installed by the dev extra, so CI runs these

from helpers import texts_of  # noqa: E402

from embedkit.distributed import embed_dataset  # noqa: E402
from integrations import FaissIndex, SQLIndex  # noqa: E402
from integrations.ray_writers import StoredVectors, load_parquet, write_pgvector  # noqa: E402

pytestmark = pytest.mark.slow  # each test starts a Ray cluster

TEXTS = [f"document {i} about {['cats', 'bonds', 'soup', 'stars', 'rain'][i % 5]} number {i * 7}" for i in range(120)]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def dataset(texts=TEXTS, blocks: int = 6):
    rows = [{"id": f"d{i:03d}", "text": t, "group": i % 3} for i, t in enumerate(texts)]
    return ray.data.from_items(rows).repartition(blocks)


def arrow(ds):
    import pyarrow as pa

    return pa.concat_tables(ray.get(ds.to_arrow_refs()))


def collect(ds) -> tuple[list[str], np.ndarray]:
    table = arrow(ds)
    ids = table.column("id").to_pylist()
    vectors = np.asarray(table.column("embedding").combine_chunks().flatten().to_numpy(), np.float32)
    return ids, vectors.reshape(len(ids), -1)


def test_parity_with_single_process_encode(cluster, minilm_path, minilm, minilm_oracle):
    """The corpus, and three texts of 10, 300 and 900 tokens, which match the oracle (cut to 256 tokens)."""
    long = texts_of()
    ds = embed_dataset(dataset(TEXTS + long), minilm_path, role="document", batch_size=32, concurrency=2)
    ids, vectors = collect(ds)
    assert sorted(ids) == [f"d{i:03d}" for i in range(123)]
    vectors = vectors[np.argsort(ids)]
    np.testing.assert_allclose(vectors[:120], minilm.encode_document(TEXTS), atol=1e-5)
    np.testing.assert_allclose(vectors[120:], minilm_oracle.encode_document(long), atol=2e-5)


def test_precision_and_columns(cluster, minilm_path, minilm):
    ds = embed_dataset(dataset(TEXTS[:10], 2), minilm_path, precision="int8", output_column="vec", concurrency=1)
    table = arrow(ds)
    assert set(table.column_names) == {"id", "text", "group", "vec"}
    values = table.column("vec").combine_chunks().flatten().to_numpy()
    assert values.dtype == np.int8 and len(values) == 10 * 384


def test_parquet_then_faiss_answers_searches(cluster, minilm_path, minilm, tmp_path):
    embed_dataset(dataset(), minilm_path, role="document", concurrency=2).write_parquet(str(tmp_path / "out"))
    with FaissIndex(minilm, path=str(tmp_path / "faiss")) as index:
        assert load_parquet(index, str(tmp_path / "out"), metadata_columns=["group"]) == 120
        assert len(index) == 120
        hit = index.search(TEXTS[42], k=1)[0]
        assert (hit.id, hit.text, hit.metadata) == ("d042", TEXTS[42], {"group": 0})


def test_pgvector_load_builds_hnsw_once_and_answers_searches(cluster, minilm_path, minilm, pg_url):
    import sqlalchemy as sa

    url = pg_url[0]
    ds = embed_dataset(dataset(), minilm_path, role="document", concurrency=2)
    assert write_pgvector(ds, url, minilm.model_name, table="ray_docs", metadata_columns=["group"]) == 120
    with SQLIndex(minilm, url, table="ray_docs") as index:
        assert len(index) == 120
        hit = index.search(TEXTS[7], k=1, filter={"group": 1})[0]
        assert (hit.id, hit.text) == ("d007", TEXTS[7])
    with sa.create_engine(url).connect() as conn:
        indexes = conn.exec_driver_sql("SELECT indexdef FROM pg_indexes WHERE tablename = 'ray_docs'").scalars().all()
    assert sum("USING hnsw" in i for i in indexes) == 1


def test_an_embedding_actor_killed_mid_batch(cluster, minilm_path):
    """kill -9 on an embedding actor in the middle of a batch (rows have come out, many remain, and its CPU
    time is growing: it is computing): Ray retries that batch, and every row comes out exactly once."""
    import contextlib
    import signal
    import threading
    import time

    import psutil

    texts = [f"{t} variant {n}" for n in range(10) for t in TEXTS]
    ds = embed_dataset(dataset(texts, 12), minilm_path, concurrency=2, batch_size=10)
    received: list[str] = []
    job = threading.Thread(
        target=lambda: [received.extend(b.column("id").to_pylist()) for b in ds.iter_batches(batch_format="pyarrow")]
    )
    job.start()
    deadline = time.monotonic() + 300

    def until(condition) -> None:
        while not condition():
            assert job.is_alive() and time.monotonic() < deadline, "the job ended before the kill"
            time.sleep(0.005)

    until(lambda: len(received) >= 10)  # a batch has come out: the actors are at work
    actors = [p for p in psutil.process_iter(["cmdline"]) if any("Embedder" in a for a in p.info["cmdline"] or [])]
    assert actors, "no embedding actor was found"
    start = {p: sum(p.cpu_times()[:2]) for p in actors}  # an earlier test's actors may linger, idle
    busy: list = []

    def computing() -> bool:  # an actor whose CPU time grows is computing a batch
        with contextlib.suppress(psutil.NoSuchProcess):
            busy.extend(p for p in actors if sum(p.cpu_times()[:2]) > start[p] + 0.05)
        return bool(busy)

    until(computing)
    left = len(texts) - len(received)
    os.kill(busy[0].pid, signal.SIGKILL)
    job.join(600)
    assert left >= 100, left  # the kill landed with most of the work still to do
    assert sorted(received) == sorted(f"d{i:03d}" for i in range(len(texts)))  # each row once: the batch was retried


def test_a_bad_row_fails_the_job_with_its_id(cluster, minilm_path):
    rows = [{"id": "ok", "text": "fine"}, {"id": "row-17", "text": None}]
    with pytest.raises(Exception, match="row with id='row-17': 'text' holds null, not a string"):
        embed_dataset(ray.data.from_items(rows), minilm_path, concurrency=1).materialize()


def test_bad_arguments(cluster, minilm_path):
    with pytest.raises(ValueError, match="the dataset has no column 'body'"):
        embed_dataset(dataset(), minilm_path, text_column="body")
    with pytest.raises(ValueError, match="role must be None, 'query' or 'document'"):
        embed_dataset(dataset(), minilm_path, role="passage")
    with pytest.raises(TypeError, match="computed elsewhere"):
        StoredVectors("m", 4).encode_query(["q"])


def test_cli_encode_on_ray_into_parquet(cluster, minilm_path, minilm, tmp_path, monkeypatch, capsys):
    import pyarrow.dataset as pads

    from integrations.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("cats sleep on warm mats\n\nbond yields rose\n")
    (tmp_path / "docs" / "b.md").write_text("# Soup\n\nTomato soup needs salt.\n")
    main(["encode", "--ray", "docs", "-o", "out", "-m", minilm_path, "-q"])
    table = pads.dataset("out", format="parquet").to_table()
    rows = dict(zip(table.column("id").to_pylist(), table.column("embedding").to_pylist()))
    root = os.path.realpath(tmp_path / "docs")  # ids are the files' paths, as embedkit add names them
    assert set(rows) == {f"{root}/a.txt:1", f"{root}/a.txt:3", f"{root}/b.md:1", f"{root}/b.md:3"}
    np.testing.assert_allclose(rows[f"{root}/a.txt:3"], minilm.encode("bond yields rose"), atol=1e-5)
    (tmp_path / "docs" / "long.txt").write_text(LONG[2] + "\n")
    main(["encode", "--ray", "docs/long.txt", "-o", "long", "-m", minilm_path, "-q", "--chunk-tokens", "48"])
    table = pads.dataset("long", format="parquet").to_table()
    assert table.column("chunk").to_pylist() == list(range(len(table))) and len(table) > 1
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["encode", "docs/long.txt", "-o", "x.npy", "-m", minilm_path, "--chunk-tokens", "48"])
    assert exc.value.code == 1 and "encode --chunk-tokens needs --ray" in capsys.readouterr().err


LONG = [
    " ".join(f"{w} sentence {i}.{n} on {w}s" for n in range(4 + 9 * (i % 3)))
    for i, w in enumerate(["cat", "bond", "soup", "star", "rain", "kite"] * 2)
]


def chunked(table) -> dict[str, list[dict]]:
    rows = sorted(table.to_pylist(), key=lambda r: (r["id"], r["chunk"]))
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["id"], []).append(row)
    return out


def test_chunking_gives_the_rows_an_index_stores(cluster, minilm_path, minilm, tmp_path, pg_url):
    """A row per chunk with the Index's own spans and vectors; Parquet into FAISS and COPY into pgvector
    answer searches exactly as an Index filled by add(); a re-load drops chunks the new load lacks."""
    from embedkit.chunking import Chunker

    ds = embed_dataset(dataset(LONG, 4), minilm_path, role="document", chunk_tokens=48, chunk_overlap=8, concurrency=2)
    table = arrow(ds)
    assert {"chunk", "chunks", "span"} <= set(table.column_names)
    spans = Chunker(minilm, 48, 8).spans(LONG)
    assert sum(len(s or [None]) for s in spans) == len(table) > len(LONG)
    for i, (text, expected) in enumerate(zip(LONG, spans)):
        rows = chunked(table)[f"d{i:03d}"]
        assert [r["chunk"] for r in rows] == list(range(len(expected or [None])))
        assert {r["chunks"] for r in rows} == {len(rows)}
        assert [r["span"] and tuple(r["span"]) for r in rows] == (expected or [None])
        assert [r["text"] for r in rows] == [text] + [""] * (len(rows) - 1)
        pieces = [text] if expected is None else [text[a:b] for a, b in expected]
        got = np.array([r["embedding"] for r in rows], np.float32)
        np.testing.assert_allclose(got, minilm.encode_document(pieces), atol=1e-5)

    ids = [f"d{i:03d}" for i in range(len(LONG))]
    reference = SQLIndex(minilm, f"sqlite:///{tmp_path / 'ref.db'}", chunk_tokens=48, chunk_overlap=8)
    reference.add(LONG, ids=ids)
    queries = ["soup sentence 3.7", "kite", "a bond on stars"]
    expected = [[(h.id, h.span, round(h.score, 4)) for h in reference.search(q, k=5)] for q in queries]

    ds.write_parquet(str(tmp_path / "out"))
    with FaissIndex(minilm, path=str(tmp_path / "faiss"), chunk_tokens=48, chunk_overlap=8) as index:
        assert load_parquet(index, str(tmp_path / "out"), batch_size=3) == len(table)  # documents span batches
        assert len(index) == len(LONG)
        for query, want in zip(queries, expected):
            assert [(h.id, h.span, round(h.score, 4)) for h in index.search(query, k=5)] == want
        assert [d.text for d in index.get(ids)] == LONG

    url = pg_url[0]
    finer = embed_dataset(dataset(LONG, 4), minilm_path, role="document", chunk_tokens=24, chunk_overlap=0)
    write_pgvector(finer, url, minilm.model_name, table="ray_chunks")  # more chunks per document
    assert write_pgvector(ds, url, minilm.model_name, table="ray_chunks") == len(table)
    with SQLIndex(minilm, url, table="ray_chunks", chunk_tokens=48, chunk_overlap=8) as index:
        for query, want in zip(queries, expected):
            assert [(h.id, h.span, round(h.score, 4)) for h in index.search(query, k=5)] == want
    import sqlalchemy as sa

    with sa.create_engine(url).connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM ray_chunks").scalar() == len(table)  # none left over


def test_incomplete_chunks_fail_the_load_naming_the_document(minilm, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    vector = minilm.encode_document(["x"])[0].tolist()
    rows = {
        "id": ["whole", "part", "done", "done"],
        "text": ["a whole one", "first of two", "first", ""],
        "embedding": [vector] * 4,
        "chunk": [0, 0, 0, 1],
        "chunks": [1, 2, 2, 2],
        "span": [None, [0, 5], [0, 3], [2, 5]],
    }
    (tmp_path / "out").mkdir()
    pq.write_table(pa.table(rows), tmp_path / "out" / "part.parquet")
    with FaissIndex(minilm, path=str(tmp_path / "faiss")) as index:
        with pytest.raises(ValueError, match=r"the chunks of 1 documents are incomplete \('part'\)"):
            load_parquet(index, str(tmp_path / "out"))
        assert sorted(d.id for d in index.get()) == ["done", "whole"]  # the complete ones are stored
    pq.write_table(pa.table({"id": ["x"], "text": [None], "embedding": [vector]}), tmp_path / "out" / "part.parquet")
    with FaissIndex(minilm, path=str(tmp_path / "faiss")) as index:
        with pytest.raises(TypeError, match="row with id='x': 'text' holds NoneType, not a string"):
            load_parquet(index, str(tmp_path / "out"))
        assert len(index) == 2


def test_chunking_arguments(cluster, minilm_path):
    with pytest.raises(ValueError, match=r"chunking adds the columns \('chunk', 'chunks', 'span'\)"):
        embed_dataset(dataset().add_column("span", lambda df: df["group"]), minilm_path, chunk_tokens=None)
    with pytest.raises(ValueError, match="backend='onnx' runs on CPU actors"):
        embed_dataset(dataset(), minilm_path, backend="onnx", num_gpus=1)
