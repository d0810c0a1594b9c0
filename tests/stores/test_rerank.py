"""The rerank stage on every backend and in every mode: the reranker's order, filters, exactly k, chunked
documents scored on their best chunk, and the CrossEncoder's own ranking of the same candidates."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit import CrossEncoder

STORES = ["faiss-flat-float32", "faiss-hnsw-int8", "sqlite", "postgres"]
MODES = ["vector", "keyword", "hybrid"]

WORDS = "apple banana cherry grape lemon mango melon olive peach pear plum".split()


def corpus():
    """30 short documents about fruit (every one holds 'fruit', so keyword search finds them all) and one
    long document whose only mention of 'zebra' is deep in a later chunk."""
    ids, texts, metas = [], [], []
    for i in range(30):
        ids.append(f"d{i:02d}")
        texts.append(f"fruit {WORDS[i % len(WORDS)]} number {i} " + " ".join(WORDS[: 1 + i % 5]))
        metas.append({"n": i, "even": i % 2 == 0})
    long = " ".join(f"fruit {w}" for w in WORDS * 12) + " zebra stripes here " + " ".join(WORDS * 6)
    ids.append("long")
    texts.append(long)
    metas.append({"n": 99, "even": False})
    return ids, texts, metas


@pytest.fixture
def index(backend, tiny_model):
    index = backend.open(tiny_model, chunk_tokens=32, chunk_overlap=4)
    ids, texts, metas = corpus()
    index.add(texts, metas, ids=ids)
    yield index
    index.close()


def by_number(query, passages):
    """A reranker whose order is known: the number in the passage, highest first (the long one: 1000)."""
    return [
        1000.0 if "zebra" in p else float(p.split("number ")[1].split()[0]) if "number " in p else -1.0
        for p in passages
    ]


@pytest.mark.parametrize("mode", MODES)
def test_hits_come_back_in_the_rerankers_order(index, mode):
    first = index.search("fruit", k=20, mode=mode)
    hits = index.search("fruit", k=5, mode=mode, rerank=by_number, rerank_candidates=20)
    expected = sorted(first, key=lambda h: -by_number("", [h.passage])[0])[:5]
    assert [h.id for h in hits] == [h.id for h in expected]
    assert [h.score for h in hits] == [by_number("", [h.passage])[0] for h in hits]
    assert [h.ranks["rerank"] for h in hits] == [1, 2, 3, 4, 5]
    first_rank = {h.id: r for r, h in enumerate(first, 1)}
    first_score = {h.id: h.score for h in first}
    for hit in hits:
        assert hit.ranks[mode] == first_rank[hit.id] and hit.scores[mode] == pytest.approx(first_score[hit.id])


@pytest.mark.parametrize("mode", MODES)
def test_filters_and_exact_k(index, mode):
    hits = index.search("fruit", k=7, mode=mode, filter={"even": True}, rerank=by_number, rerank_candidates=30)
    assert len(hits) == 7 and all(h.metadata["even"] for h in hits)
    numbers = [h.metadata["n"] for h in hits]
    assert numbers == sorted(numbers, reverse=True)
    assert len(index.search("fruit", k=50, mode=mode, rerank=by_number, rerank_candidates=60)) == 31


def test_a_chunked_document_is_scored_on_its_best_chunk(index):
    """The reranker sees a chunked document once, as the chunk the first stage found best."""
    whole = corpus()[1][-1]
    best = next(h for h in index.search("zebra stripes", k=31) if h.id == "long").passage
    seen = []

    def spy(query, passages):
        seen.extend(passages)
        return [2000.0 if p == best else by_number(query, [p])[0] for p in passages]

    hits = index.search("zebra stripes", k=3, rerank=spy, rerank_candidates=31)
    assert hits[0].id == "long" and hits[0].passage == best and len(best) < len(whole) and best in whole
    assert len(seen) == 31 and sum(p in whole and len(p) < len(whole) for p in seen) == 1


def test_a_cross_encoder_orders_as_its_own_rank(index, cross_dirs):
    model = CrossEncoder(cross_dirs[1], device="cpu")
    for mode in MODES:
        first = index.search("which fruit is sweet", k=12, mode=mode, filter={"n": {"$lt": 20}})
        hits = index.search(
            "which fruit is sweet", k=4, mode=mode, filter={"n": {"$lt": 20}}, rerank=model, rerank_candidates=12
        )
        ranked = model.rank("which fruit is sweet", [h.passage for h in first], top_k=4)
        assert [h.id for h in hits] == [first[r["corpus_id"]].id for r in ranked]
        np.testing.assert_allclose([h.score for h in hits], [r["score"] for r in ranked], atol=1e-6)


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"rerank": by_number, "rerank_candidates": 3}, ValueError, "rerank_candidates=3 is less than k=5"),
        ({"rerank": by_number, "rerank_candidates": 0}, ValueError, "rerank_candidates must be a positive int"),
        ({"rerank": "a model name"}, TypeError, "rerank must be a CrossEncoder or a callable"),
        ({"rerank": lambda q, ps: [1.0]}, ValueError, "the reranker gave 1 scores for 20 passages"),
        (
            {"rerank": lambda q, ps: [float("nan")] * len(ps)},
            ValueError,
            "gave a score of nan for the passage at index 0",
        ),
    ],
)
def test_bad_rerank_arguments(index, options, error, message):
    with pytest.raises(error, match=message):
        index.search("fruit", k=5, **{"rerank_candidates": 20, **options})
    assert len(index) == 31


def test_a_cross_encoder_with_several_labels_is_refused(index, cross_dirs):
    with pytest.raises(ValueError, match="this CrossEncoder has 3 labels"):
        index.search("fruit", rerank=CrossEncoder(cross_dirs[3], device="cpu"))
