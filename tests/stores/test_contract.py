"""One conformance suite for every Index backend: FAISS (each kind and precision), SQLite, PostgreSQL."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from store_workers import EVERY, unit

from integrations import SQLIndex
from integrations.errors import InvalidInputError

STORES = EVERY
EXACT = {"faiss-flat-float32", "sqlite", "postgres"}  # float32 exact search: ranking equals numpy's


@pytest.fixture
def index(backend, tiny_model):
    return backend.open(tiny_model)


DOCS = {
    "a": ({"source": "a.pdf", "page": 1, "draft": False, "score": 0.5}, "The cat sat on the mat."),
    "b": ({"source": "a.pdf", "page": 2, "draft": True}, "Dogs chase cats in the park."),
    "c": ({"source": "b.pdf", "page": 3, "score": 2, "tag": None}, "Stock markets fell today."),
    "d": ({"source": "b.pdf", "page": "3", "tag": "x"}, "Interest rates rose again."),
    "e": ({"source": "c.txt", "draft": 1}, "A recipe for tomato soup."),
    "f": ({}, "An unlabelled note."),
}


@pytest.fixture
def filled(index):
    ids = list(DOCS)
    index.add([DOCS[i][1] for i in ids], [DOCS[i][0] for i in ids], ids=ids)
    return index


# ----------------------------------------------------------------- add, get, upsert, delete


def test_add_get_len(index):
    ids = index.add(["first text", "second text"], [{"n": 1}, {"n": 2}])
    assert len(ids) == 2 and len(set(ids)) == 2 and all(isinstance(i, str) and i for i in ids)
    assert len(index) == 2
    got = index.get([ids[1], "missing", ids[0]])
    assert [(r.id, r.text, r.metadata) for r in got] == [
        (ids[1], "second text", {"n": 2}),
        (ids[0], "first text", {"n": 1}),
    ]
    assert index.add([]) == []
    assert len(index) == 2


def test_metadata_round_trips_exactly(index):
    metadata = {
        "int": 3,
        "float": 2.5,
        "bool": True,
        "none": None,
        "str": "ü",
        "list": [1, "a"],
        "nested": {"x": [True]},
    }
    index.add(["text"], [metadata], ids=["m"])
    (record,) = index.get(["m"])
    assert record.metadata == metadata
    assert type(record.metadata["int"]) is int and type(record.metadata["float"]) is float
    hit = index.search("text", k=1)[0]
    assert hit.metadata == metadata
    hit.metadata["int"] = 99  # results are copies: mutating one leaves the store alone
    assert index.get(["m"])[0].metadata["int"] == 3


def test_upsert_replaces_text_metadata_and_vector(index, tiny_model):
    index.add(["old text about cats", "other"], [{"v": 1}, {}], ids=["x", "y"])
    index.add(["new text about finance"], [{"v": 2}], ids=["x"])
    assert len(index) == 2
    (record,) = index.get(["x"])
    assert (record.text, record.metadata) == ("new text about finance", {"v": 2})
    top = index.search("new text about finance", k=2)
    assert top[0].id == "x" and top[0].text == "new text about finance"
    assert sum(h.id == "x" for h in top) == 1


def test_delete_ignores_missing_and_returns_count(filled):
    assert filled.delete(["a", "nope", "b", "a"]) == 2
    assert filled.delete(["nope"]) == 0
    assert filled.delete([]) == 0
    assert len(filled) == 4
    assert filled.get(["a", "c"])[0].id == "c"
    assert {h.id for h in filled.search("cat", k=10)} == {"c", "d", "e", "f"}


def test_many_deletes_and_upserts_stay_consistent(index):
    rng = np.random.default_rng(0)
    vectors = unit(rng, 200)
    ids = [f"d{i}" for i in range(200)]
    index.add_embeddings(vectors, [f"t{i}" for i in range(200)], [{"i": i} for i in range(200)], ids)
    assert index.delete(ids[:120]) == 120  # forces a FAISS rebuild
    index.add_embeddings(vectors[150:170], [f"u{i}" for i in range(150, 170)], ids=ids[150:170])  # upserts
    assert len(index) == 80
    for i in (150, 169, 199):
        hits = index.search_by_vector(vectors[i], k=1)
        assert hits[0].id == f"d{i}" and hits[0].score > 0.95
    assert {r.text for r in index.get(ids[150:152])} == {"u150", "u151"}
    assert all(
        not h.id.startswith(("d1", "d0")) or int(h.id[1:]) >= 120 for h in index.search_by_vector(vectors[0], k=80)
    )


# ----------------------------------------------------------------- search


def test_search_shapes_and_order(filled):
    hits = filled.search("cats and dogs", k=3)
    assert len(hits) == 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    batch = filled.search(["cats and dogs", "money"], k=2)
    assert len(batch) == 2 and all(len(b) == 2 for b in batch)
    assert [h.id for h in batch[0]] == [h.id for h in filled.search("cats and dogs", k=2)]
    assert filled.search([], k=2) == []
    assert len(filled.search("x", k=100)) == len(DOCS)


def test_scores_are_cosine(index):
    rng = np.random.default_rng(1)
    vectors = unit(rng, 20)
    index.add_embeddings(vectors * 3.0, [f"t{i}" for i in range(20)], ids=[f"v{i}" for i in range(20)])
    query = rng.normal(size=32).astype(np.float32)
    hits = index.search_by_vector(query, k=5)
    expected = vectors @ (query / np.linalg.norm(query))
    tol = 1e-5 if index_is_exact(index) else 0.05
    for h in hits:
        assert abs(h.score - expected[int(h.id[1:])]) < tol


def index_is_exact(index) -> bool:
    return isinstance(index, SQLIndex) or (index.precision == "float32" and index.kind == "flat")


def test_prompts_are_applied(index, tiny_model):
    """Documents get the passage prompt, queries the query prompt (the fixture model has both)."""
    text = "The same words on both sides."
    index.add([text], ids=["p"])
    score = index.search(text, k=1)[0].score
    q = tiny_model.encode(text, prompt="query: ")
    d = tiny_model.encode(text, prompt="passage: ")
    expected = float(q @ d / np.linalg.norm(q) / np.linalg.norm(d))
    assert expected < 0.999  # the prompts really change the vectors
    assert abs(score - expected) < (1e-5 if index_is_exact(index) else 0.03)


# ----------------------------------------------------------------- filters

FILTERS = [
    ({"source": "a.pdf"}, {"a", "b"}),
    ({"source": {"$eq": "b.pdf"}}, {"c", "d"}),
    ({"source": {"$ne": "a.pdf"}}, {"c", "d", "e", "f"}),
    ({"page": {"$gt": 1}}, {"b", "c"}),
    ({"page": {"$gte": 1}}, {"a", "b", "c"}),
    ({"page": {"$lt": 3}}, {"a", "b"}),
    ({"page": {"$lte": 3}}, {"a", "b", "c"}),
    ({"page": {"$gte": "3"}}, {"d"}),
    ({"page": 3}, {"c"}),
    ({"page": "3"}, {"d"}),
    ({"score": {"$gt": 0.75}}, {"c"}),
    ({"score": 0.5}, {"a"}),
    ({"draft": True}, {"b"}),
    ({"draft": False}, {"a"}),
    ({"draft": 1}, {"e"}),
    ({"tag": None}, {"c"}),
    ({"tag": {"$exists": True}}, {"c", "d"}),
    ({"tag": {"$exists": False}}, {"a", "b", "e", "f"}),
    ({"source": {"$in": ["a.pdf", "c.txt"]}}, {"a", "b", "e"}),
    ({"source": {"$nin": ["a.pdf", "c.txt"]}}, {"c", "d", "f"}),
    ({"page": {"$in": [1, 3]}}, {"a", "c"}),
    ({"page": {"$gte": 1, "$lt": 3}}, {"a", "b"}),
    ({"source": "a.pdf", "page": {"$gte": 2}}, {"b"}),
    ({"$and": [{"source": "b.pdf"}, {"tag": "x"}]}, {"d"}),
    ({"$or": [{"draft": True}, {"page": {"$gt": 2}}]}, {"b", "c"}),
    ({"$not": {"source": "a.pdf"}}, {"c", "d", "e", "f"}),
    ({"$not": {"page": {"$gt": 1}}}, {"a", "d", "e", "f"}),
    ({"$or": [{"$and": [{"source": "a.pdf"}, {"draft": False}]}, {"$not": {"source": {"$exists": True}}}]}, {"a", "f"}),
    ({"$and": [{"$or": [{"page": 1}, {"page": 2}]}, {"$not": {"draft": True}}]}, {"a"}),
    ({"source": "nowhere"}, set()),
]


@pytest.mark.parametrize("filter, expected", FILTERS, ids=[str(f) for f, _ in FILTERS])
def test_filters(filled, filter, expected):
    assert {h.id for h in filled.search("anything", k=10, filter=filter)} == expected


@pytest.mark.parametrize(
    "filter, message",
    [
        ({"page": {"$gtx": 1}}, r"filter\['page'\]\['\$gtx'\]: unknown operator"),
        ({"$nor": []}, r"filter\['\$nor'\]: unknown operator"),
        ({"$and": {"a": 1}}, r"filter\['\$and'\]: expected a non-empty list"),
        ({"$or": [{"a": 1}, "b"]}, r"filter\['\$or'\]\[1\]: expected a dict"),
        ({"page": {"$in": 3}}, r"filter\['page'\]\['\$in'\]: expected a non-empty list"),
        ({"page": {"$gt": None}}, r"comparisons need a number or a string"),
        ({"page": {"$exists": "yes"}}, r"expected true or false"),
        ({"page": [1, 2]}, r"filter\['page'\]: expected a string, number, boolean or null, got list"),
        ({"page": float("nan")}, r"numbers must be finite"),
        ({'a"; DROP TABLE documents; --': 1}, r"field names must be non-empty, without quotes"),
        ({}, r"filter: empty filter"),
        ("source", r"filter: expected a dict, got str"),
    ],
)
def test_malformed_filters(filled, filter, message):
    with pytest.raises(ValueError, match=message):
        filled.search("x", filter=filter)
    assert len(filled) == len(DOCS)


def test_filter_values_are_bound_not_spliced(filled):
    hostile = "a.pdf' OR '1'='1"
    assert filled.search("x", k=10, filter={"source": hostile}) == []
    filled.add(["odd"], [{"it's": hostile}], ids=["odd"])
    assert [h.id for h in filled.search("x", k=10, filter={"it's": hostile})] == ["odd"]


def test_exact_k_under_selective_filters(index):
    """When at least k documents match, k come back, whatever the ANN candidate list held."""
    rng = np.random.default_rng(2)
    vectors = unit(rng, 400)
    ids = [f"d{i}" for i in range(400)]
    index.add_embeddings(vectors, ids, [{"group": i % 50} for i in range(400)], ids)
    query = unit(rng, 1)[0]
    for group in (7, 49):
        members = [i for i in range(400) if i % 50 == group]  # 8 documents
        hits = index.search_by_vector(query, k=5, filter={"group": group})
        assert len(hits) == 5 and all(h.metadata["group"] == group for h in hits)
        assert len(index.search_by_vector(query, k=20, filter={"group": group})) == len(members)
        if index_is_exact(index):
            truth = sorted(members, key=lambda i: -float(vectors[i] @ query))[:5]
            assert [h.id for h in hits] == [f"d{i}" for i in truth]
    wide = index.search_by_vector(query, k=50, filter={"group": {"$lt": 25}})
    assert len(wide) == 50 and all(h.metadata["group"] < 25 for h in wide)


# ----------------------------------------------------------------- persistence and reopening


def test_persistence_round_trip(backend, tiny_model, filled):
    before = [(h.id, round(h.score, 5)) for h in filled.search("cats", k=4)]
    reopened = backend.reopen(filled, tiny_model)
    assert len(reopened) == len(DOCS)
    assert [(h.id, round(h.score, 5)) for h in reopened.search("cats", k=4)] == before
    assert reopened.get(["c"])[0].metadata == DOCS["c"][0]
    reopened.add(["after reopening"], ids=["z"])
    assert len(reopened) == len(DOCS) + 1


def test_reopen_with_other_dimension_fails(backend, tiny_model, filled, bert_dir):
    from embedkit import SentenceTransformer
    from embedkit.modules import Dense, Pooling, Transformer

    other = SentenceTransformer(modules=[Transformer(bert_dir), Pooling(32), Dense(32, 16)], device="cpu")
    with pytest.raises(ValueError, match="holds 32-dimensional vectors .* produces 16 dimensions"):
        backend.reopen(filled, other)


# ----------------------------------------------------------------- bad input loses nothing


class BrokenEncoder:
    """Returns vectors of the wrong width: the add must fail before anything is written."""

    def __init__(self, model):
        self.model = model

    def encode_query(self, texts, **kw):
        return self.model.encode_query(texts, **kw)

    def encode_document(self, texts, **kw):
        return self.model.encode_document(texts, **kw)[:, :-1]

    def get_embedding_dimension(self):
        return 32


def test_failed_add_leaves_index_unchanged(backend, tiny_model, filled):
    snapshot = sorted((r.id, r.text) for r in filled.get(list(DOCS)))
    bad_vectors = unit(np.random.default_rng(3), 3)
    bad_vectors[2, 5] = np.nan
    attempts = [  # each with the error it raises and what its message must name
        (
            lambda: filled.add_embeddings(bad_vectors, ["x", "y", "z"], ids=["a", "new1", "new2"]),
            ValueError,
            r"^embedding at index 2 contains NaN or infinity$",
        ),
        (
            lambda: filled.add_embeddings(bad_vectors[:, :16], ["x", "y", "z"]),
            ValueError,
            r"^embeddings must have shape \[n, 32\], got \[3, 16\]$",
        ),
        (
            lambda: filled.add(["x", "y"], [{"ok": 1}, {"bad": object()}], ids=["a", "new"]),
            ValueError,
            r"^metadata at index 1 is not JSON-serializable: object <object object",
        ),
        (
            lambda: filled.add(["x", "y"], ids=["new", "new"]),
            ValueError,
            r"^id 'new' at index 1 appears more than once in this batch$",
        ),
        (lambda: filled.add(["x", None]), TypeError, r"^add\(\) input at index 1 is NoneType, expected str$"),
        (lambda: filled.add(["x", "y"], ids=["only-one"]), ValueError, r"^got 1 ids for 2 texts$"),
        (lambda: filled.add(["x"], [{"a": 1}, {"b": 2}]), ValueError, r"^metadatas must be a list of 1 dicts$"),
        (lambda: filled.add("not a list"), TypeError, r"^add\(\) expects a list of texts, got a single str$"),
    ]
    for attempt, kind, message in attempts:
        with pytest.raises(kind, match=message) as raised:
            attempt()
        assert isinstance(raised.value, InvalidInputError)  # the stores' own error, with its built-in base
    filled.encoder = BrokenEncoder(tiny_model)
    with pytest.raises(ValueError, match=r"shape \[n, 32\], got \[1, 31\]"):
        filled.add(["x"], ids=["a"])
    filled.encoder = tiny_model
    assert sorted((r.id, r.text) for r in filled.get(list(DOCS) + ["new", "new1", "new2"])) == snapshot
    assert len(filled) == len(DOCS)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda ix: ix.search("q", k=0), ValueError, "k must be a positive int, got 0"),
        (lambda ix: ix.search(None), TypeError, "search\\(\\) expects a str or a list of str"),
        (lambda ix: ix.search(["ok", 3]), TypeError, "search\\(\\) input at index 1 is int"),
        (lambda ix: ix.get("a"), TypeError, "ids must be a list of str, got str"),  # get(None) is every document
        (lambda ix: ix.delete(None), TypeError, "delete\\(\\) needs ids, a filter or both"),
        (lambda ix: ix.get(["ok", 5]), TypeError, "id at index 1 must be a non-empty str"),
        (lambda ix: ix.delete("a"), TypeError, "ids must be a list of str, got str"),
        (lambda ix: ix.search_by_vector(np.ones(7)), ValueError, r"shape \[n, 32\], got \[1, 7\]"),
    ],
)
def test_bad_calls(filled, call, error, message):
    with pytest.raises(error, match=message):
        call(filled)
    assert len(filled) == len(DOCS)


# ----------------------------------------------------------------- concurrency


def test_concurrent_adds_lose_nothing(index):
    rng = np.random.default_rng(4)
    vectors = unit(rng, 160)
    errors = []

    def worker(t):
        try:
            for j in range(10):
                n = t * 40 + j * 4
                ids = [f"t{t}-{n + m}" for m in range(4)]
                index.add_embeddings(vectors[n : n + 4], ids, ids=ids)
                index.search_by_vector(vectors[n], k=3)
        except Exception as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(index) == 160
    assert len(index.get([f"t{t}-{n}" for t in range(4) for n in range(t * 40, t * 40 + 40)])) == 160
