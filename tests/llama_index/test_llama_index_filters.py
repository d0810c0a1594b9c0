"""The LlamaIndex filter translation against LlamaIndex's own evaluator
(``llama_index.core.vector_stores.utils.build_metadata_filter_fn``, what SimpleVectorStore runs), on a
randomized table of 900 filters over varied metadata, on every backend; and the refusals."""

from __future__ import annotations

import random

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.schema import TextNode  # noqa: E402
from llama_index.core.vector_stores import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)
from llama_index.core.vector_stores.utils import build_metadata_filter_fn  # noqa: E402
from store_workers import MAIN  # noqa: E402

from integrations import FilterError  # noqa: E402
from integrations.filters import llama_index as translation  # noqa: E402
from integrations.llama_index import EmbedkitVectorStore  # noqa: E402

STORES = MAIN
WORDS = ["tea", "Tea", "coffee", "green tea", "", "é", "TEA", "te"]
NUMBERS = [0, 1, 2, 2.0, 2.5, -1, 10, 1.0]


def metadata_of(rng: random.Random) -> dict:
    """Varied metadata: some keys missing or null, numbers and booleans, strings, lists, mixed types."""
    pools = {
        "year": [*NUMBERS, None, True, False],
        "topic": [*WORDS, None],
        "tags": [[], ["tea"], ["tea", "coffee"], [1, 2], ["Tea", 2.0], [True], "tea", None],
        "mixed": [1, "1", True, 2.5, "tea", None, [1]],
        "score": [0.5, 0.25, 1, 0, -2.5, None],
    }
    return {key: rng.choice(pool) for key, pool in pools.items() if rng.random() < 0.8}


def value_for(rng: random.Random, op: FilterOperator):
    if op in (FilterOperator.IN, FilterOperator.NIN, FilterOperator.ANY, FilterOperator.ALL):
        pool = rng.choice([WORDS, [0, 1, 2, 10, -1], [2.0, 2.5, 0.5]])
        return rng.sample(pool, rng.randint(0, 3))
    if op in (FilterOperator.TEXT_MATCH, FilterOperator.TEXT_MATCH_INSENSITIVE):
        return rng.choice(WORDS)
    return rng.choice([*WORDS, *NUMBERS, 0.5, 0.25])


def random_filters(rng: random.Random, depth: int = 0) -> MetadataFilters:
    items = []
    for _ in range(rng.randint(1, 3)):
        if depth < 2 and rng.random() < 0.25:
            items.append(random_filters(rng, depth + 1))
        else:
            op = rng.choice(list(FilterOperator))
            key = rng.choice(["year", "topic", "tags", "mixed", "score", "absent"])
            value = None if op == FilterOperator.IS_EMPTY else value_for(rng, op)
            items.append(MetadataFilter(key=key, value=value, operator=op))
    return MetadataFilters(filters=items, condition=rng.choice(list(FilterCondition)))


def reference(filters: MetadataFilters, metadata: dict) -> bool:
    """LlamaIndex's evaluator, leaf by leaf (it refuses nested filters); a leaf it cannot compare
    (TypeError) is false. On flat filters it agrees with one call of the evaluator wherever that call
    does not raise (checked below)."""
    results = []
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            results.append(reference(f, metadata))
            continue
        try:
            results.append(build_metadata_filter_fn(lambda _: metadata, MetadataFilters(filters=[f]))("n"))
        except TypeError:
            results.append(False)
    if filters.condition == FilterCondition.AND:
        return all(results)
    return any(results) if filters.condition == FilterCondition.OR else not any(results)


@pytest.fixture(scope="module")
def table():
    rng = random.Random(20)
    metas = [metadata_of(rng) for _ in range(60)]
    return metas, [random_filters(rng) for _ in range(900)]


def test_the_reference_is_llama_index_s_own_evaluator_on_flat_filters(table):
    metas, filters = table
    compared = 0
    for f in filters:
        if any(isinstance(x, MetadataFilters) for x in f.filters):
            continue
        for meta in metas:
            try:
                whole = build_metadata_filter_fn(lambda _: meta, f)("n")
            except TypeError:
                continue
            assert whole == reference(f, meta)
            compared += 1
    assert compared > 10_000


def test_most_filters_run_in_the_store_alone(table):
    _, filters = table
    exact = sum(translation.translate(f).exact for f in filters)
    assert exact > len(filters) * 0.4, exact


@pytest.mark.slow
def test_every_filter_of_the_table_matches_what_llama_index_matches(table, make):
    metas, filters = table
    store = EmbedkitVectorStore(make())
    nodes = [TextNode(id_=f"n{i:02d}", text=f"node {i}", metadata=m) for i, m in enumerate(metas)]
    store.add(nodes)
    split = 0
    for f in filters:
        want = [n.node_id for n, m in zip(nodes, metas) if reference(f, m)]
        split += 0 < len(want) < len(nodes)
        got = sorted(n.node_id for n in store.get_nodes(filters=f))
        assert got == want, f
    assert split > 250  # filters that keep some nodes and drop others


def test_vector_queries_filter_before_ranking(table, make):
    """A filtered query gives the k nearest among the matching nodes (exact search: flat and SQL)."""
    metas, filters = table
    index = make()
    store = EmbedkitVectorStore(index)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(len(metas), 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.add(
        [
            TextNode(id_=f"n{i:02d}", text=f"node {i}", metadata=m, embedding=list(map(float, v)))
            for i, (m, v) in enumerate(zip(metas, vectors))
        ]
    )
    query = rng.normal(size=32).astype(np.float32)
    approximate = "hnsw" in str(index) or "ivf" in str(index)
    for f in filters[:120]:
        allowed = [i for i, m in enumerate(metas) if reference(f, m)]
        order = sorted(allowed, key=lambda i: -float(vectors[i] @ query))[:5]
        result = store.query(VectorStoreQuery(query_embedding=list(map(float, query)), similarity_top_k=5, filters=f))
        got = [int(i[1:]) for i in result.ids]
        assert set(got) <= set(allowed)
        if not approximate:
            assert got == order, f


@pytest.mark.parametrize(
    ("leaf", "message"),
    [
        (MetadataFilter(key="topic", value="tea", operator=FilterOperator.IN), "needs a list"),
        (MetadataFilter(key="topic", value="tea", operator=FilterOperator.ANY), "needs a list"),
        (MetadataFilter(key="year", value=1, operator=FilterOperator.TEXT_MATCH), "needs a string"),
        (MetadataFilter(key="year", value=None, operator=FilterOperator.GT), "needs a value"),
        (MetadataFilter(key='a"b', value=1), "filter keys"),
    ],
)
def test_filters_without_a_meaning_are_refused(leaf, message):
    with pytest.raises(FilterError, match=message):
        translation.translate(MetadataFilters(filters=[leaf]))


def test_a_mismatched_comparison_does_not_match_where_llama_index_raises(make):
    store = EmbedkitVectorStore(make())
    store.add(
        [TextNode(id_="a", text="a", metadata={"year": "recent"}), TextNode(id_="b", text="b", metadata={"year": 3})]
    )
    f = MetadataFilters(filters=[MetadataFilter(key="year", value=2, operator=FilterOperator.GT)])
    with pytest.raises(TypeError):
        build_metadata_filter_fn(lambda _: {"year": "recent"}, f)("a")
    assert [n.node_id for n in store.get_nodes(filters=f)] == ["b"]
