"""The sparse leg of the stores: ``mode="sparse"`` is the exact top k by the dot product of the sparse
vectors (checked against the dot products computed here, and against sentence-transformers' own
SparseEncoder with a real SPLADE model on SciFact), filtered, after deletes and upserts, with each hit's
sparse vector; hybrid search fuses the legs ``weights`` picks; an index keeps its sparse vectors in the
transaction of its rows and says what it needs when opened without its sparse encoder."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import pathlib
import random
import signal
import sqlite3
import time

import numpy as np
import pytest
from store_workers import HashEncoder, HashSparse, crasher, open_target, text_of

from integrations import FaissIndex
from integrations.errors import InvalidInputError, WrongTypeError
from integrations.sparse import SparseTables

STORES = ["faiss-flat-float32", "faiss-hnsw-int8", "faiss-ivf-ubinary", "sqlite", "postgres"]
WORDS = [f"w{i}" for i in range(60)]
SCIFACT = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "scifact"


def corpus(n, seed=0):
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, rng.integers(3, 9))) for _ in range(n)]
    return [f"d{i}" for i in range(n)], texts, [{"g": i % 5} for i in range(n)]


def brute(docs: dict[str, str], metadata: dict[str, dict], query: str, keep=lambda m: True):
    """{id: score} of every document that shares a dimension with ``query``, computed here."""
    encoder = HashSparse()
    ids = [i for i in docs if keep(metadata.get(i))]
    scores = encoder.encode_document([docs[i] for i in ids]) @ encoder.encode_query([query])[0]
    return {i: float(s) for i, s in zip(ids, scores) if s > 0}


def check_exact(hits, truth: dict[str, float], k: int, rel=1e-5):
    best = sorted(truth.values(), reverse=True)[:k]
    assert [h.score for h in hits] == pytest.approx(best, rel=rel, abs=1e-6)
    for hit in hits:  # each hit is scored by its own vector, so equal scores may come in either order
        assert hit.score == pytest.approx(truth[hit.id], rel=rel, abs=1e-6)


@pytest.mark.slow
def test_sparse_search_is_the_exact_top_k_filtered_and_after_deletes_and_upserts(make):
    index = make(sparse_encoder=HashSparse())
    ids, texts, metadatas = corpus(300)
    index.add(texts, metadatas, ids=ids)
    docs, meta = dict(zip(ids, texts)), dict(zip(ids, metadatas))
    queries = [" ".join(WORDS[i : i + 3]) for i in range(0, 45, 5)]
    for query in queries:
        check_exact(index.search(query, k=10, mode="sparse"), brute(docs, meta, query), 10)
        hits = index.search(query, k=7, mode="sparse", filter={"g": {"$in": [1, 3]}})
        check_exact(hits, brute(docs, meta, query, lambda m: m["g"] in (1, 3)), 7)
    gone = ids[::3]
    index.delete(gone)
    new = {
        i: " ".join(WORDS[j % 60] for j in range(int(i[1:]), int(i[1:]) + 6)) for i in ids[1:120:3]
    }  # none of them deleted
    index.add(list(new.values()), [{"g": 9}] * len(new), ids=list(new))
    for i in gone:
        docs.pop(i)
    docs.update(new)
    meta.update({i: {"g": 9} for i in new})
    index = make(sparse_encoder=HashSparse()) if not isinstance(index, FaissIndex) else index
    for query in queries:
        hits = index.search(query, k=10, mode="sparse")
        assert not {h.id for h in hits} & set(gone)
        check_exact(hits, brute(docs, meta, query), 10)
        check_exact(
            index.search(query, k=5, mode="sparse", filter={"g": 9}), brute(docs, meta, query, lambda m: m["g"] == 9), 5
        )


def test_given_sparse_vectors_are_stored_and_searched_exactly(make, backend):
    """add_embeddings(sparse_embeddings=...) stores the caller's vectors (not the encoder's), and
    search_by_sparse_vector ranks by them: the exact top k of the dot products computed here."""
    rng = np.random.default_rng(3)
    ids, texts, metadatas = corpus(150)
    given = [{int(d): float(w) for d, w in zip(rng.choice(5000, 12, replace=False), rng.random(12) + 0.1)} for _ in ids]
    index = make(sparse_encoder=HashSparse())
    dense = HashEncoder().encode_document(texts)
    index.add_embeddings(dense[:100], texts[:100], metadatas[:100], ids=ids[:100], sparse_embeddings=given[:100])
    rows = scipy_rows(given[100:])  # a scipy matrix works as well as dicts
    index.add_embeddings(dense[100:], texts[100:], metadatas[100:], ids=ids[100:], sparse_embeddings=rows)
    for q in range(5):
        query = {d: 1.0 + q for d in list(given[q * 7])[:6] + list(given[q * 11 + 3])[:6]}
        truth = {i: sum(w * query.get(d, 0.0) for d, w in v.items()) for i, v in zip(ids, given)}
        truth = {i: s for i, s in truth.items() if s}
        check_exact(index.search_by_sparse_vector(query, k=8), truth, 8)
        kept = {i: s for i, s in truth.items() if int(i[1:]) % 5 == 2}
        check_exact(index.search_by_sparse_vector(query, k=4, filter={"g": 2}), kept, 4)
    hit = index.search_by_sparse_vector(given[0], k=1, include_vectors=True)[0]
    assert hit.id == ids[0] and hit.sparse_vector == pytest.approx(given[0])
    for bad, message in (
        ([{1: 1.0}], "gave 1 vectors for 2 texts"),
        ([{-1: 1.0}, {}], r"must lie in \[0, 2\*\*31\)"),
        ([{1: "x"}, {}], "weights must be numbers"),
        ([{"a": 1.0}, {}], "dimensions must be integers"),
        ([{1: float("inf")}, {}], "NaN or infinity"),
    ):
        with pytest.raises(InvalidInputError, match=message):
            index.add_embeddings(dense[:2], ["x", "y"], ids=["x", "y"], sparse_embeddings=bad)
    assert len(index) == 150
    with pytest.raises(InvalidInputError, match="k must be"):
        index.search_by_sparse_vector({1: 1.0}, k=0)
    elsewhere(backend, "plain")
    plain = make()
    for call in (
        lambda: plain.add_embeddings(dense[:1], ["x"], ids=["x"], sparse_embeddings=[{1: 1.0}]),
        lambda: plain.search_by_sparse_vector({1: 1.0}),
    ):
        with pytest.raises(InvalidInputError, match="this index has no sparse leg: create it with sparse_encoder="):
            call()
    assert len(plain) == 0


def scipy_rows(dicts):
    import scipy.sparse

    rows = scipy.sparse.dok_matrix((len(dicts), 5000), dtype=np.float32)
    for i, row in enumerate(dicts):
        for d, w in row.items():
            rows[i, d] = w
    return rows.tocsr()


def test_hits_and_records_carry_their_sparse_vectors(make):
    index = make(sparse_encoder=HashSparse())
    ids, texts, metadatas = corpus(40)
    index.add(texts, metadatas, ids=ids)
    expected = {i: HashSparse().encode_document([t])[0] for i, t in zip(ids, texts)}
    as_dict = lambda row: {int(d): float(row[d]) for d in np.flatnonzero(row)}  # noqa: E731
    for mode in ("sparse", "vector", "keyword", "hybrid"):
        hits = index.search("w1 w2 w3", k=5, mode=mode, include_vectors=True)
        assert hits and all(h.sparse_vector == pytest.approx(as_dict(expected[h.id])) for h in hits)
        assert all(h.vector is not None for h in hits)
    records = index.get(ids[:3], include_vectors=True)
    assert [r.sparse_vector for r in records] == [pytest.approx(as_dict(expected[i])) for i in ids[:3]]
    assert index.search("w1", k=3, mode="sparse")[0].sparse_vector is None  # only when asked for
    index.update_metadata(ids[:2], [{"g": 7}, {"g": 8}])  # keeps the vectors (FaissIndex moves its rows)
    assert index.get(ids[:2], include_vectors=True)[1].sparse_vector == pytest.approx(as_dict(expected[ids[1]]))
    assert {h.id for h in index.search(texts[1], k=40, mode="sparse", filter={"g": 8})} == {ids[1]}


def test_hybrid_fuses_the_legs_that_weights_pick(make):
    index = make(sparse_encoder=HashSparse())
    ids, texts, metadatas = corpus(100)
    index.add(texts, metadatas, ids=ids)
    every = index.search("w4 w5", k=10, mode="hybrid", candidates=20)
    assert set().union(*(h.ranks for h in every)) == {"vector", "keyword", "sparse"}
    legs = {mode: index.search("w4 w5", k=20, mode=mode) for mode in ("vector", "keyword", "sparse")}
    weights = {"sparse": 2.0, "keyword": 0.5}
    fused = index.search("w4 w5", k=10, mode="hybrid", candidates=20, weights=weights)
    expected = {}
    for leg, weight in weights.items():
        for rank, hit in enumerate(legs[leg], 1):
            expected[hit.id] = expected.get(hit.id, 0.0) + weight / (60 + rank)
    assert [h.score for h in fused] == pytest.approx(sorted(expected.values(), reverse=True)[:10])
    assert all(set(h.ranks) <= set(weights) for h in fused)
    for bad, error in (
        ({"dense": 1.0}, InvalidInputError),
        ({"sparse": -1.0}, InvalidInputError),
        ({"sparse": float("nan")}, InvalidInputError),
        ({"sparse": True}, InvalidInputError),
        ({}, WrongTypeError),
        ([("sparse", 1.0)], WrongTypeError),
    ):
        with pytest.raises(error):
            index.search("w4", mode="hybrid", weights=bad)
    with pytest.raises(InvalidInputError, match="weights apply to mode='hybrid'"):
        index.search("w4", mode="sparse", weights={"sparse": 1.0})


def test_an_index_keeps_its_sparse_leg_and_says_what_it_needs(make, backend):
    plain = make()
    with pytest.raises(InvalidInputError, match="has no sparse leg; open it with sparse_encoder="):
        plain.search("w1", mode="sparse")
    with pytest.raises(InvalidInputError, match="has no sparse leg"):
        plain.search("w1", mode="hybrid", weights={"sparse": 1.0})
    assert set().union(*(h.ranks for h in plain.search("w1", mode="hybrid"))) <= {"vector", "keyword"}
    plain.add(["w1 w2"], ids=["a"])
    plain.close()
    with pytest.raises(ValueError, match="holds 1 documents without sparse vectors"):
        make(sparse_encoder=HashSparse())
    elsewhere(backend, "sparse")
    index = make(sparse_encoder=HashSparse())
    index.add(["w1 w2", "w3"], ids=["a", "b"])
    index.close()
    reopened = make()  # without its sparse encoder: readable, and it says what adding needs
    assert [h.id for h in reopened.search("w3", mode="hybrid")][:1] == ["b"]
    with pytest.raises(ValueError, match=r"keeps sparse vectors \(hash-sparse\): open it with sparse_encoder="):
        reopened.add(["w4"], ids=["c"])
    with pytest.raises(InvalidInputError, match=r"keeps sparse vectors \(hash-sparse\)"):
        reopened.search("w3", mode="sparse")
    assert len(reopened) == 2
    reopened.close()
    again = make(sparse_encoder=HashSparse())
    assert [h.id for h in again.search("w3", mode="sparse")] == ["b"]
    again.close()
    # an instance opened before another gave the empty index its sparse leg cannot add rows without one
    elsewhere(backend, "late")
    early = make()
    make(sparse_encoder=HashSparse()).close()
    with pytest.raises(ValueError, match="keeps sparse vectors .*: open it with sparse_encoder="):
        early.add(["w1"], ids=["x"])
    assert len(early) == 0


def elsewhere(backend, name: str) -> None:
    """Point ``backend`` at new storage of the same kind."""
    if backend.name == "postgres":
        backend.options["table"] = backend.table = f"{backend.table}_{name}"
    elif backend.name == "sqlite":
        backend.target = backend.url = backend.target.rsplit("/", 1)[0] + f"/{name}.db"
    else:
        backend.path += f"-{name}"
        backend.target = backend.path


def test_a_failed_sparse_write_leaves_the_index_as_it_was(make, backend, monkeypatch):
    """The write fails after the rows and their sparse vectors went in: none of it stays."""
    from integrations.sql import postgres

    index = make(sparse_encoder=HashSparse())
    index.add(["w1 w2", "w2 w3"], ids=["a", "b"])
    owner, name = (postgres, "upsert") if backend.name == "postgres" else (SparseTables, "write")
    original = getattr(owner, name)

    def broken(*args):
        original(*args)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(owner, name, broken)
    with pytest.raises(Exception, match="disk I/O error"):
        index.add(["w1 w9", "w2"], ids=["a", "c"])
    monkeypatch.setattr(owner, name, original)
    assert len(index) == 2 and index.get(["a"])[0].text == "w1 w2"
    assert [h.id for h in index.search("w9", k=5, mode="sparse")] == []
    assert [h.id for h in index.search("w1", k=5, mode="sparse")] == ["a"]


@pytest.mark.slow
@pytest.mark.stores(["faiss-flat-float32", "faiss-ivf-int8", "sqlite", "postgres"])
def test_kill_9_during_add_keeps_each_row_with_its_sparse_vector(backend):
    """A writer killed at random points 6 times: every reopen holds whole batches, each row with its own
    sparse vector, and sparse searches give the exact top k over what survived."""
    options = {**backend.options, "sparse_encoder": HashSparse()}
    open_target(backend.target, options).close()
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["store_workers"])
    rng, encoder = random.Random(11), HashSparse()
    for _ in range(6):
        started = ctx.Event()
        child = ctx.Process(target=crasher, args=(backend.target, options, False, started))
        child.start()
        assert started.wait(60)
        time.sleep(rng.random() * 0.3)
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        index = open_target(backend.target, options)
        records = index.get(include_vectors=True)
        batches: dict[str, int] = {}
        for record in records:
            batches[record.metadata["batch"]] = batches.get(record.metadata["batch"], 0) + 1
            row = encoder.encode_document([text_of(record.id)])[0]
            assert record.sparse_vector == pytest.approx({int(d): float(row[d]) for d in np.flatnonzero(row)})
        assert set(batches.values()) == {20}, "a batch was stored in part"
        docs = {r.id: text_of(r.id) for r in records}
        for record in rng.sample(records, 3):  # the exact top 5 over what survived
            check_exact(index.search(docs[record.id], k=5, mode="sparse"), brute(docs, {}, docs[record.id]), 5)
        index.close()
    assert len(batches) >= 6


@pytest.mark.stores(["faiss-flat-float32", "sqlite", "postgres"])
def test_compact_drops_the_postings_of_deleted_rows(make, backend):
    """FaissIndex.compact() and SQLIndex.save(force=True) keep exactly the live rows' postings, those of
    rows written again included."""
    index = make(sparse_encoder=HashSparse())
    ids, texts, metadatas = corpus(200)
    index.add(texts, metadatas, ids=ids)
    index.delete(ids[:150])
    index.add(["w1 w5 w7"] * 10, ids=ids[150:160])
    posted, live = postings_counter(index, backend)
    before = posted()
    if isinstance(index, FaissIndex):
        index.compact()
    else:
        index.save(force=True)
    assert posted() == live() < before
    docs = dict(zip(ids[160:], texts[160:])) | dict.fromkeys(ids[150:160], "w1 w5 w7")
    check_exact(index.search("w1 w2", k=10, mode="sparse"), brute(docs, dict(zip(ids, metadatas)), "w1 w2"), 10)


def postings_counter(index, backend):
    """(postings kept, active dimensions of the live rows): two counters of the index's sparse tables."""
    if backend.name == "postgres":
        import sqlalchemy as sa

        from integrations.sql import pg_sparse

        def count(sql: str) -> int:
            with index.engine.connect() as conn:
                return conn.execute(sa.text(sql)).scalar() or 0

        postings = pg_sparse.names(backend.table)[0]
        return (
            lambda: count(f"SELECT sum(length(sids) / 8) FROM {postings}"),
            lambda: count(
                f"SELECT sum(cardinality(string_to_array(trim('{{}}' FROM split_part(sparse::text, '/', 1)), ','))) "
                f'FROM "{backend.table}"'
            ),
        )
    faiss = isinstance(index, FaissIndex)
    db = sqlite3.connect(f"{backend.path}/docs.sqlite" if faiss else backend.url.removeprefix("sqlite:///"))
    prefix = "sparse" if faiss else "embedkit_sparse_documents"
    return (
        lambda: sum(len(s) // 8 for (s,) in db.execute(f"SELECT sids FROM {prefix}_postings")),
        lambda: sum(len(d) // 4 for (d,) in db.execute(f"SELECT dims FROM {prefix}_rows")),
    )


@pytest.mark.slow
@pytest.mark.stores(["postgres"])
def test_compacting_while_another_instance_writes_loses_no_postings(make):
    """One instance adds, rewrites and deletes while another compacts over and over (PostgreSQL, where a
    compaction and a write run at once): every write's postings survive, so the search stays the exact top
    k of what is left."""
    import threading

    writer, compactor = make(sparse_encoder=HashSparse()), make(sparse_encoder=HashSparse())
    ids, texts, metadatas = corpus(400, seed=3)
    docs, meta = {}, dict(zip(ids, metadatas))
    done = threading.Event()

    def write():
        try:
            for b in range(0, 400, 40):
                writer.add(texts[b : b + 40], metadatas[b : b + 40], ids=ids[b : b + 40])
                docs.update(zip(ids[b : b + 40], texts[b : b + 40]))
                writer.delete(ids[b : b + 10])
                for i in ids[b : b + 10]:
                    docs.pop(i)
                writer.add(["w3 w4 w5"] * 5, ids=ids[b + 10 : b + 15])
                docs.update(dict.fromkeys(ids[b + 10 : b + 15], "w3 w4 w5"))
        finally:
            done.set()

    thread = threading.Thread(target=write)
    thread.start()
    compactions = 0
    while not done.is_set() or compactions == 0:
        compactor.save(force=True)
        compactions += 1
    thread.join()
    for query in ("w3 w4", "w1 w9 w17", "w50 w51 w52"):
        check_exact(compactor.search(query, k=20, mode="sparse"), brute(docs, meta, query), 20)
    assert len(compactor) == len(docs)


@pytest.mark.stores(["postgres"])
def test_postgresql_sparse_search_reads_past_many_deleted_best_rows(make):
    """The best postings belong to deleted rows, far more than the first round asks for: the search asks
    again until the top k is exact, with and without a filter, and ties come in id order."""
    index = make(sparse_encoder=HashSparse())
    ids = [f"d{i:03d}" for i in range(400)]
    texts = [" ".join(["w1"] * (1 + i % 40) + ["w2"]) for i in range(400)]
    metadatas = [{"g": i % 2} for i in range(400)]
    index.add(texts, metadatas, ids=ids)
    gone = [i for i, t in zip(ids, texts) if t.count("w1") > 30]  # the 90 best for "w1"
    index.delete(gone)
    docs = {i: t for i, t in zip(ids, texts) if i not in gone}
    meta = dict(zip(ids, metadatas))
    for k in (1, 10, 100):
        hits = index.search("w1", k=k, mode="sparse")
        check_exact(hits, brute(docs, meta, "w1"), k)
        assert [h.id for h in hits] == sorted((h.id for h in hits), key=lambda i: (-docs[i].count("w1"), i))
        check_exact(
            index.search("w1", k=k, mode="sparse", filter={"g": 1}), brute(docs, meta, "w1", lambda m: m["g"]), k
        )


@pytest.mark.stores(["postgres"])
def test_a_postgresql_table_from_before_sparse_postings_gets_them_when_opened(make, backend):
    """A table whose rows kept their sparse vectors only in the sparsevec column (the layout before
    postings) is given sids and postings when opened, in the opening transaction, and searches exactly."""
    import sqlalchemy as sa

    from integrations.sql import pg_sparse

    index = make(sparse_encoder=HashSparse())
    ids, texts, metadatas = corpus(300)
    index.add(texts, metadatas, ids=ids)
    index.delete(ids[:30])
    postings, sequence = pg_sparse.names(backend.table)
    with index.engine.begin() as conn:  # back to the earlier layout
        conn.exec_driver_sql(f'ALTER TABLE "{backend.table}" DROP COLUMN sparse_sid')
        conn.exec_driver_sql(f"DROP TABLE {postings}")
        conn.exec_driver_sql(f"DROP SEQUENCE {sequence}")
    index.close()
    reopened = make(sparse_encoder=HashSparse())
    docs, meta = dict(zip(ids[30:], texts[30:])), dict(zip(ids, metadatas))
    for query in ("w1 w2", "w7 w30 w44"):
        check_exact(reopened.search(query, k=10, mode="sparse"), brute(docs, meta, query), 10)
    posted, live = postings_counter(reopened, backend)
    assert posted() == live() > 0
    with reopened.engine.connect() as conn:
        assert conn.execute(sa.text(f'SELECT count(*) FROM "{backend.table}" WHERE sparse_sid IS NULL')).scalar() == 0
    reopened.add(["w1 w2 w3"], ids=["new"])
    assert reopened.search("w1 w2 w3", k=1, mode="sparse")[0].id == "new"


@pytest.mark.slow
@pytest.mark.stores(["postgres"])
def test_postgresql_keeps_sparse_vectors_in_a_sparsevec_column_and_refuses_what_it_cannot_hold(make, backend):
    """Many rows go in by COPY with their sparse vectors; a vector pgvector cannot hold is refused whole."""
    import sqlalchemy as sa

    index = make(sparse_encoder=HashSparse())
    ids, texts, metadatas = corpus(1200)  # at least postgres.COPY_ROWS: the COPY path
    index.add(texts, metadatas, ids=ids)
    with index.engine.connect() as conn:
        kind = conn.execute(
            sa.text("SELECT udt_name FROM information_schema.columns WHERE table_name = :t AND column_name = 'sparse'"),
            {"t": backend.table},
        ).scalar()
    assert kind == "sparsevec"
    docs, meta = dict(zip(ids, texts)), dict(zip(ids, metadatas))
    check_exact(index.search("w7 w8 w9", k=10, mode="sparse"), brute(docs, meta, "w7 w8 w9"), 10)
    wide = make(sparse_encoder=WideSparse())
    with pytest.raises(InvalidInputError, match="16001 active dimensions; PostgreSQL keeps at most 16000"):
        wide.add(["w1", "too wide"], ids=["d0", "new"])
    assert len(wide) == 1200 and wide.get(["d0"])[0].text == texts[0]


class WideSparse(HashSparse):
    """HashSparse, except that a text with "wide" has 16,001 active dimensions."""

    def encode_document(self, texts, **kw):
        import scipy.sparse

        rows = scipy.sparse.lil_matrix(super().encode_document(texts))
        rows.resize(len(texts), 20_000)
        for i, text in enumerate(texts):
            if "wide" in text:
                rows[i, :16_001] = 1.0
        return rows.tocsr()


@pytest.mark.slow
@pytest.mark.stores(["faiss-flat-float32", "sqlite", "postgres"])
def test_splade_on_scifact_ranks_as_sentence_transformers_does(make, splade_tiny):
    """200 SciFact documents and 20 of its queries through SPLADE-tiny: each store's sparse top 10 is the
    top 10 of the dot products sentence-transformers' own SparseEncoder gives."""
    ranks_as_the_oracle(make, splade_tiny)


@pytest.mark.slow
@pytest.mark.stores(["sqlite"])
def test_inference_free_splade_on_scifact_ranks_as_sentence_transformers_does(make, inference_free_splade):
    """The same with inference-free SPLADE, whose queries are weighed by token without running the model."""
    ranks_as_the_oracle(make, inference_free_splade)


def ranks_as_the_oracle(make, folder: str) -> None:
    from embedkit import SparseEncoder

    ids, texts, queries, scores = oracle_scores(folder)
    index = make(sparse_encoder=SparseEncoder(folder))
    index.add(texts, ids=ids)
    for query, row in zip(queries, scores):
        truth = {i: float(v) for i, v in zip(ids, row) if v > 0}
        check_exact(index.search(query, k=10, mode="sparse"), truth, 10, rel=1e-4)


@functools.cache
def oracle_scores(folder: str):
    """200 SciFact documents (ids, texts), 20 of its queries, and their dot products by sentence-transformers'
    own SparseEncoder from ``folder`` (computed once per test process)."""
    st = pytest.importorskip("sentence_transformers")
    corpus_rows = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").open()][:200]
    texts = [(r.get("title", "") + " " + r["text"]).strip() for r in corpus_rows]
    ids = [r["_id"] for r in corpus_rows]
    queries = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").open()][:20]
    oracle = st.SparseEncoder(folder, device="cpu")
    scores = (oracle.encode_query(queries).to_dense() @ oracle.encode_document(texts).to_dense().T).numpy()
    return ids, texts, queries, scores


def test_every_form_of_sparse_output_gives_the_same_vectors():
    import scipy.sparse
    import torch

    from integrations.sparse import vectors_of

    dense = np.zeros((3, 50), np.float32)
    dense[0, [3, 7]] = [0.5, 2.0]
    dense[2, [1, 49]] = [1.25, 0.75]  # row 1 has no active dimension
    forms = [dense, torch.from_numpy(dense), torch.from_numpy(dense).to_sparse(), scipy.sparse.csr_matrix(dense)]
    forms.append([torch.from_numpy(row).to_sparse() for row in dense])
    for form in forms:
        got = vectors_of(form, 3)
        assert [d.tolist() for d, _ in got] == [[3, 7], [], [1, 49]]
        assert [w.tolist() for _, w in got] == [[0.5, 2.0], [], [1.25, 0.75]]
        assert all(d.dtype == np.int32 and w.dtype == np.float32 for d, w in got)
    with pytest.raises(InvalidInputError, match="gave 3 vectors for 2 texts"):
        vectors_of(dense, 2)
    dense[1, 5] = np.nan
    with pytest.raises(InvalidInputError, match="NaN or infinity"):
        vectors_of(dense, 3)
    with pytest.raises(InvalidInputError, match="must be 2-D"):
        vectors_of(np.zeros(5), 1)
