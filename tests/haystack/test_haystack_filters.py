"""The Haystack filter translation against Haystack's own evaluator
(``haystack.utils.filters.document_matches_filter``, what InMemoryDocumentStore runs), on a randomized
table of 600 filters, on FAISS (flat), SQLite and PostgreSQL; and the documented differences."""

from __future__ import annotations

import random

import pytest
from haystack import Document
from haystack.errors import FilterError
from haystack.utils.filters import document_matches_filter

from integrations.filters import haystack as translation

DATES = ["1969-07-21T20:17:40", "1972-12-11T19:54:58", "1989-11-09 17:53:00", "1989-11-09T17:53:00", "2024-01-01"]
WORDS = ["tea", "Tea", "", "coffee", "é"]
NUMBERS = [0, 1, 2, 2.0, -1, 10, 1.0, 2.5]


def meta_of(rng: random.Random) -> dict:
    """Keys compared by order hold one kind each (numbers, or ISO dates), as Haystack's evaluator raises
    on a mixed ordering comparison; the others mix types, lists and nulls."""
    pools = {
        "number": [*NUMBERS, None],
        "date": [*DATES, None],
        "name": [*WORDS, None, True, 1],
        "tags": [["tea"], [], [1, 2], "tea", None],
        "flag": [True, False, 0, 1, None],
    }
    return {key: rng.choice(pool) for key, pool in pools.items() if rng.random() < 0.8}


def comparison(rng: random.Random) -> dict:
    op = rng.choice(["==", "!=", ">", ">=", "<", "<=", "in", "not in"])
    if op in (">", ">=", "<", "<="):
        field, value = rng.choice(
            [("meta.number", rng.choice([*NUMBERS, None, True])), ("meta.date", rng.choice(DATES))]
        )
    else:
        field = rng.choice(
            ["meta.number", "meta.date", "meta.name", "meta.tags", "meta.flag", "meta.absent", "name", "content"]
        )
        pool = [*NUMBERS, *WORDS, *DATES[:2], None, True, False, ["tea"], "A Foo Document 1"]
        value = rng.sample(pool, rng.randint(0, 3)) if op in ("in", "not in") else rng.choice(pool)
    return {"field": field, "operator": op, "value": value}


def random_filter(rng: random.Random, depth: int = 0) -> dict:
    if depth >= 2 or rng.random() < 0.35:
        return comparison(rng)
    conditions = [random_filter(rng, depth + 1) for _ in range(rng.randint(1, 3))]
    return {"operator": rng.choice(["AND", "OR", "NOT"]), "conditions": conditions}


@pytest.fixture(scope="module")
def table():
    rng = random.Random(7)
    documents = [Document(content=f"A Foo Document {i}", meta=meta_of(rng)) for i in range(60)]
    return documents, [random_filter(rng) for _ in range(600)]


def test_most_filters_run_in_the_store_alone(table):
    _, filters = table
    exact = sum(translation.translate(f).exact for f in filters)
    assert exact > len(filters) * 0.4, exact


@pytest.mark.slow
def test_every_filter_of_the_table_matches_what_haystack_matches(table, haystack_store):
    documents, filters = table
    haystack_store.write_documents(documents)
    split = 0
    for f in filters:
        want = sorted(d.id for d in documents if document_matches_filter(f, d))
        split += 0 < len(want) < len(documents)
        got = sorted(d.id for d in haystack_store.filter_documents(f))
        assert got == want, f
        assert haystack_store.count_documents_by_filter(f) == len(want)
    assert split > 250  # filters that keep some documents and drop others


def test_two_spellings_of_one_instant_are_equal_as_in_haystack(haystack_store):
    a = Document(content="a", meta={"date": "1989-11-09T17:53:00"})
    b = Document(content="b", meta={"date": "1989-11-09 17:53:00+00:00"})
    haystack_store.write_documents([a, b])
    f = {"field": "meta.date", "operator": "==", "value": "1989-11-09T17:53:00"}
    assert {d.id for d in haystack_store.filter_documents(f)} == {d.id for d in (a, b) if document_matches_filter(f, d)}
    assert len(haystack_store.filter_documents(f)) == 2


def test_difference_a_stored_string_does_not_match_a_number_where_haystack_raises(haystack_store):
    """Documented difference: Haystack's evaluator raises FilterError when ``>`` meets a stored string
    that is not a date; the store's exact ``>`` on numbers leaves such documents out."""
    words, number = Document(content="a", meta={"n": "many"}), Document(content="b", meta={"n": 5})
    haystack_store.write_documents([words, number])
    f = {"field": "meta.n", "operator": ">", "value": 1}
    with pytest.raises(FilterError):
        document_matches_filter(f, words)
    assert [d.id for d in haystack_store.filter_documents(f)] == [number.id]


def test_difference_haystack_errors_are_raised_before_any_document_is_read(haystack_store):
    """Haystack's evaluator checks ``in`` values only when it meets a document; the store refuses the
    filter at once, even on an empty store."""
    with pytest.raises(FilterError, match="needs a list"):
        haystack_store.filter_documents({"field": "meta.n", "operator": "in", "value": 3})


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"operator": "XOR", "conditions": []}, "unknown logical operator"),
        ({"field": "meta.a", "operator": "~", "value": 1}, "unknown comparison operator"),
        ({"field": "meta.a", "operator": "<", "value": [1]}, "can't compare with a list"),
        ({"field": 3, "operator": "==", "value": 1}, "'field' must be a string"),
        ({"operator": "AND", "conditions": "x"}, "must be a list"),
        ([{"field": "meta.a"}], "must be a dict"),
    ],
)
def test_malformed_filters_are_refused_with_haystack_s_error(haystack_store, bad, message):
    with pytest.raises(FilterError, match=message):
        haystack_store.filter_documents(bad)
