"""The conveniences Chroma and LangChain users reach for, the same on every backend: get with a filter
and paging, delete by filter, iteration, update_metadata, include_vectors and $contains on lists."""

from __future__ import annotations

import numpy as np
import pytest
from store_workers import MAIN, unit

from integrations import FilterError

STORES = MAIN

IDS = ["b", "a", "Z", "é", "a2", "10", "9"]  # code-point order: 10 9 Z a a2 b é


@pytest.fixture
def index(backend, tiny_model):
    with backend.open(tiny_model) as index:
        yield index


@pytest.fixture
def filled(index):
    rng = np.random.default_rng(0)
    metadatas = [{"n": n, "even": n % 2 == 0} for n in range(len(IDS))]
    index.add_embeddings(unit(rng, len(IDS)), [f"text {i}" for i in IDS], metadatas, IDS)
    return index


def test_get_everything_in_code_point_order_and_paged(filled):
    assert [r.id for r in filled.get()] == sorted(IDS)
    assert [r.id for r in filled.get(limit=3)] == sorted(IDS)[:3]
    assert [r.id for r in filled.get(offset=2, limit=3)] == sorted(IDS)[2:5]
    assert [r.id for r in filled.get(offset=5)] == sorted(IDS)[5:]
    assert filled.get(limit=0) == [] and filled.get(offset=99) == []
    record = filled.get(["é"])[0]
    assert (record.text, record.metadata) == ("text é", {"n": 3, "even": False})


def test_get_with_a_filter(filled):
    even = sorted(i for n, i in enumerate(IDS) if n % 2 == 0)
    assert [r.id for r in filled.get(filter={"even": True})] == even
    assert [r.id for r in filled.get(filter={"even": True}, offset=1, limit=2)] == even[1:3]
    # with ids: their order, restricted to the matches, then paged
    assert [r.id for r in filled.get(["9", "b", "a", "nope"], filter={"even": True})] == ["9", "b"]
    assert [r.id for r in filled.get(["9", "b", "a"], offset=1, limit=1)] == ["b"]
    assert filled.get(filter={"n": {"$gt": 100}}) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"limit": -1}, "limit must be an int >= 0, got -1"),
        ({"offset": -2}, "offset must be an int >= 0, got -2"),
        ({"limit": 1.5}, "limit must be an int >= 0, got 1.5"),
        ({"filter": {"n": {"$bad": 1}}}, r"unknown operator '\$bad'"),
    ],
)
def test_get_refuses_bad_arguments(filled, kwargs, message):
    with pytest.raises(ValueError, match=message):
        filled.get(**kwargs)


def test_get_include_vectors(filled):
    records = filled.get(["a", "é"], include_vectors=True)
    np.testing.assert_array_equal(np.stack([r.vector for r in records]), filled.get_vectors(["a", "é"]))
    assert filled.get(["a"])[0].vector is None


def test_delete_by_filter(filled):
    filled.search_by_vector(filled.get_vectors(["a"])[0], k=3, filter={"even": False})  # warm the filter's cache
    assert filled.delete(filter={"even": False}) == 3
    assert sorted(r.id for r in filled) == sorted(i for n, i in enumerate(IDS) if n % 2 == 0)
    assert filled.search_by_vector(filled.get_vectors(["b"])[0], k=5, filter={"even": False}) == []
    # ids and a filter: only the ids that match
    assert filled.delete(["b", "Z", "a2", "a"], filter={"n": {"$gte": 2}}) == 2  # Z (2) and a2 (4)
    assert [r.id for r in filled] == ["9", "b"]
    assert filled.delete(filter={"n": 1000}) == 0
    assert len(filled) == 2


def test_delete_needs_ids_or_a_filter_and_a_bad_filter_deletes_nothing(filled):
    with pytest.raises(TypeError, match="delete\\(\\) needs ids, a filter or both"):
        filled.delete()
    with pytest.raises(FilterError, match="empty filter"):
        filled.delete(filter={})
    with pytest.raises(FilterError):
        filled.delete(filter={"n": {"$in": []}})
    assert len(filled) == len(IDS)


@pytest.mark.slow
def test_iteration_reads_every_document_once_in_order(index):
    ids = [f"doc-{n:05d}" for n in range(2345)]  # more than two pages
    rng = np.random.default_rng(1)
    index.add_embeddings(unit(rng, len(ids)), ids, [{"n": n} for n in range(len(ids))], ids[::-1][::-1])
    seen = list(index)
    assert [r.id for r in seen] == ids
    assert all(r.text == r.id and r.metadata == {"n": n} for n, r in enumerate(seen))


def test_update_metadata_keeps_the_vector_and_filters_follow(filled, backend, tiny_model):
    before = filled.get_vectors(["a", "b"])
    probe = before[0]
    assert {h.id for h in filled.search_by_vector(probe, k=10, filter={"tag": "new"})} == set()  # warm the cache
    filled.update_metadata(["a", "b"], [{"tag": "new"}, {"tag": "new", "n": 0}])
    np.testing.assert_array_equal(filled.get_vectors(["a", "b"]), before)
    assert [(r.id, r.metadata) for r in filled.get(["a", "b"])] == [
        ("a", {"tag": "new"}),
        ("b", {"tag": "new", "n": 0}),
    ]
    assert {h.id for h in filled.search_by_vector(probe, k=10, filter={"tag": "new"})} == {"a", "b"}
    assert {h.id for h in filled.search_by_vector(probe, k=10, filter={"even": True})} == {"Z", "a2", "9"}
    assert len(filled) == len(IDS)
    with backend.open(tiny_model) as other:  # another instance on the same storage sees it
        assert other.get(["a"])[0].metadata == {"tag": "new"}


def test_update_metadata_with_an_unknown_id_changes_nothing(filled):
    with pytest.raises(KeyError, match="unknown ids: \\['nope'\\]"):
        filled.update_metadata(["a", "nope"], [{"x": 1}, {"x": 2}])
    assert filled.get(["a"])[0].metadata == {"n": 1, "even": False}
    with pytest.raises(ValueError, match="metadatas must be a list of 2 dicts"):
        filled.update_metadata(["a", "b"], [{"x": 1}])
    with pytest.raises(TypeError, match="needs a list of 1 dicts, got None"):
        filled.update_metadata(["a"], None)
    with pytest.raises(ValueError, match="id 'a' at index 1 appears more than once"):
        filled.update_metadata(["a", "a"], [{}, {}])


def test_search_include_vectors(filled):
    query = unit(np.random.default_rng(5), 1)[0]
    hits = filled.search_by_vector(query, k=4, include_vectors=True)
    vectors = filled.get_vectors([h.id for h in hits])
    np.testing.assert_array_equal(np.stack([h.vector for h in hits]), vectors)
    if filled.__class__.__name__ == "SQLIndex" or getattr(filled, "precision", "") == "float32":
        np.testing.assert_allclose([h.score for h in hits], vectors @ query, atol=1e-5)
    assert all(h.vector is None for h in filled.search_by_vector(query, k=2))
    assert [h.vector is not None for h in filled.search("text", k=2, include_vectors=True)] == [True, True]


TAGGED = {
    "t1": {"tags": ["x", "y"]},
    "t2": {"tags": ["y", 1]},
    "t3": {"tags": "x"},  # a string, not a list
    "t4": {"tags": [["x"]]},  # x only inside a nested list
    "t5": {"tags": [True, None]},
    "t6": {},
    "t7": {"tags": ["X", "xx", 2.5]},
}


@pytest.mark.parametrize(
    "filter, expected",
    [
        ({"tags": {"$contains": "x"}}, {"t1"}),
        ({"tags": {"$contains": "y"}}, {"t1", "t2"}),
        ({"tags": {"$contains": 1}}, {"t2"}),
        ({"tags": {"$contains": 1.0}}, {"t2"}),
        ({"tags": {"$contains": 2.5}}, {"t7"}),
        ({"tags": {"$contains": True}}, {"t5"}),
        ({"tags": {"$contains": None}}, {"t5"}),
        ({"tags": {"$contains": "1"}}, set()),
        ({"$not": {"tags": {"$contains": "x"}}}, set(TAGGED) - {"t1"}),
        ({"tags": {"$contains": "x"}, "$or": [{"tags": {"$contains": "y"}}]}, {"t1"}),
        ({"tags": "x"}, {"t3"}),  # equality is not membership
    ],
    ids=lambda value: str(sorted(value)) if isinstance(value, set) else str(value),  # the same in every process
)
def test_contains_on_lists(index, filter, expected):
    ids = list(TAGGED)
    index.add_embeddings(unit(np.random.default_rng(2), len(ids)), ids, [TAGGED[i] for i in ids], ids)
    assert {h.id for h in index.search_by_vector(unit(np.random.default_rng(3), 1)[0], k=10, filter=filter)} == expected
    assert {r.id for r in index.get(filter=filter)} == expected


def test_contains_takes_one_value(filled):
    with pytest.raises(FilterError, match=r"filter\['tags'\]\['\$contains'\]: expected a string, number"):
        filled.get(filter={"tags": {"$contains": ["x"]}})
