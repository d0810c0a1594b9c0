"""Keyword and hybrid search, the same on every backend: filters on both legs with exact k, the keyword
index in step with every write, queries full of FTS syntax, and reciprocal rank fusion by hand."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import sqlalchemy as sa

from integrations import FaissIndex, SQLIndex
from integrations._shared.fusion import fuse
from integrations.keyword.terms import terms

STORES = ["faiss-flat-float32", "faiss-hnsw-int8", "sqlite", "postgres"]

WORDS = ["apple", "banana", "cherry", "damson", "elder", "fig", "grape", "hazel", "kiwi", "lemon", "mango", "nectar"]


def corpus(n: int = 60) -> tuple[list[str], list[str], list[dict]]:
    """Document i holds words i % 12 and (i * 5) % 12 of WORDS, and belongs to group i % 3."""
    ids = [f"doc{i:02d}" for i in range(n)]
    texts = [f"{WORDS[i % 12]} and {WORDS[(i * 5) % 12]} number {i}" for i in range(n)]
    return ids, texts, [{"group": i % 3, "i": i} for i in range(n)]


def holding(texts, ids, metadatas, words, filter_group=None) -> set[str]:
    """The independent truth: ids whose text holds one of ``words`` (and in the group)."""
    return {
        i
        for i, t, m in zip(ids, texts, metadatas)
        if set(t.split()) & set(words) and (filter_group is None or m["group"] == filter_group)
    }


@pytest.fixture
def filled(backend, tiny_model):
    index = backend.open(tiny_model)
    ids, texts, metadatas = corpus()
    index.add(texts, metadatas, ids=ids)
    yield index
    index.close()


def test_keyword_finds_exactly_the_documents_holding_a_word(filled):
    ids, texts, metadatas = corpus()
    for words in (["apple"], ["kiwi", "fig"], ["zzz"], ["apple", "zzz"]):
        hits = filled.search(" ".join(words), k=100, mode="keyword")
        assert {h.id for h in hits} == holding(texts, ids, metadatas, words), words
        assert all(h.score > 0 for h in hits) and [h.score for h in hits] == sorted(
            (h.score for h in hits), reverse=True
        )
        assert all(h.text == texts[ids.index(h.id)] and h.metadata == metadatas[ids.index(h.id)] for h in hits)


def test_keyword_ranks_documents_with_more_query_words_first(filled):
    ids, texts, metadatas = corpus()
    two = holding(texts, ids, metadatas, ["banana"])  # these hold banana and fig; cherry ones hold one word
    assert len(two) == 10 and two == holding(texts, ids, metadatas, ["fig"])
    hits = filled.search("banana fig cherry", k=20, mode="keyword")
    assert {h.id for h in hits[:10]} == two and len(hits) == 20


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
@pytest.mark.parametrize("k", [1, 5, 15])
def test_filters_apply_to_both_legs_with_exact_k(filled, mode, k):
    ids, texts, metadatas = corpus()
    hits = filled.search("apple banana cherry damson elder fig", k=k, filter={"group": 1}, mode=mode)
    assert all(h.metadata["group"] == 1 for h in hits)
    expected = len(holding(texts, ids, metadatas, WORDS[:6], 1)) if mode == "keyword" else 20
    assert len(hits) == min(k, expected)
    assert len({h.id for h in hits}) == len(hits)


def test_hybrid_hits_carry_their_ranks_and_the_fused_score(filled):
    query = "cherry grape"
    vector = filled.search(query, k=100)
    keyword = filled.search(query, k=100, mode="keyword")
    hybrid = filled.search(query, k=10, mode="hybrid", rrf_k=60, candidates=100)
    assert len(hybrid) == 10
    for hit in hybrid:
        expected = {}
        for leg, hits in (("vector", vector), ("keyword", keyword)):
            found = [n for n, h in enumerate(hits, 1) if h.id == hit.id]
            if found:
                expected[leg] = found[0]
        assert hit.ranks == expected
        assert hit.score == pytest.approx(sum(1 / (60 + r) for r in expected.values()))
    assert [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)


def test_fusion_by_hand():
    from integrations import Hit

    dense = [Hit("a", "", {}, 0.9), Hit("b", "", {}, 0.8), Hit("c", "", {}, 0.7)]
    sparse = [Hit("c", "", {}, 5.0), Hit("d", "", {}, 4.0)]
    fused = fuse({"vector": dense, "keyword": sparse}, k=3, rrf_k=10)
    assert [h.id for h in fused] == ["c", "a", "b"]  # c: 1/13 + 1/11; a: 1/11; b: 1/12
    assert fused[0].score == pytest.approx(1 / 13 + 1 / 11) and fused[0].ranks == {"vector": 3, "keyword": 1}
    assert fused[1].ranks == {"vector": 1}


def test_keyword_index_follows_upserts_deletes_and_metadata_updates(filled):
    filled.add(["a unique zebra sentence"], [{"group": 9}], ids=["z"])
    assert [h.id for h in filled.search("zebra", mode="keyword")] == ["z"]
    filled.add(["now about a quokka"], [{"group": 9}], ids=["z"])  # upsert
    assert filled.search("zebra", mode="keyword") == []
    assert [h.id for h in filled.search("quokka", mode="keyword")] == ["z"]
    filled.update_metadata(["z"], [{"group": 8}])
    assert [h.id for h in filled.search("quokka", mode="keyword", filter={"group": 8})] == ["z"]
    assert filled.delete(filter={"group": 8}) == 1
    assert filled.search("quokka", mode="keyword") == [] and filled.search("quokka", mode="hybrid", k=3)[0].id != "z"


HOSTILE = [
    '"',
    '"unbalanced quote',
    "apple*",
    "-apple",
    "NEAR(apple banana)",
    "(apple",
    "apple)",
    "apple AND OR NOT",
    "text:apple",
    "^apple",
    "{apple banana}",
    "apple & banana | !cherry <-> fig",
    "'; DROP TABLE documents; --",
    "",
    "   ",
    "über café naïve",
    "東京 apple",
    "🍎 apple",
    "a" * 5000,
    " ".join(f"w{i}" for i in range(500)),
]


@pytest.mark.parametrize("query", HOSTILE, ids=range(len(HOSTILE)))
def test_fts_syntax_in_queries_is_plain_text(filled, query):
    keyword = filled.search(query, k=5, mode="keyword")
    words = set(terms(query))
    assert all(set(h.text.split()) & words for h in keyword)
    assert bool(keyword) == bool(words & set(WORDS))
    assert len(filled.search(query, k=5, mode="hybrid")) == 5  # the vector leg always answers
    assert len(filled) == 60


def test_bad_modes_and_parameters(filled):
    modes = "\\('vector', 'keyword', 'sparse', 'hybrid'\\)"
    with pytest.raises(ValueError, match=f"mode must be one of {modes}, got 'bm25'"):
        filled.search("x", mode="bm25")
    with pytest.raises(ValueError, match="rrf_k must be a positive int, got 0"):
        filled.search("x", mode="hybrid", rrf_k=0)
    with pytest.raises(ValueError, match="candidates must be a positive int"):
        filled.search("x", mode="hybrid", candidates=-1)
    with pytest.raises(ValueError, match="k must be a positive int"):
        filled.search("x", mode="keyword", k=0)


def test_several_queries_and_include_vectors(filled):
    results = filled.search(["apple", "kiwi"], k=3, mode="hybrid", include_vectors=True)
    assert len(results) == 2 and all(len(r) == 3 for r in results)
    hit = results[0][0]
    np.testing.assert_array_equal(hit.vector, filled.get_vectors([hit.id])[0])


def test_an_index_from_before_keyword_search_is_indexed_on_open(tmp_path, tiny_model):
    """Drop the keyword index, as a folder or database from an older embedkit has none; reopening builds it."""
    ids, texts, metadatas = corpus(12)
    with SQLIndex(tiny_model, f"sqlite:///{tmp_path}/old.db") as index:
        index.add(texts, metadatas, ids=ids)
    with sa.create_engine(f"sqlite:///{tmp_path}/old.db").begin() as conn:
        for name in ("ai", "ad", "au"):
            conn.exec_driver_sql(f'DROP TRIGGER "documents_embedkit_fts_{name}"')
        conn.exec_driver_sql("DROP TABLE embedkit_fts_documents")
    with FaissIndex(tiny_model, path=str(tmp_path / "old")) as index:
        index.add(texts, metadatas, ids=ids)
    conn = sqlite3.connect(tmp_path / "old" / "docs.sqlite")
    conn.executescript("DROP TABLE fts;")
    conn.close()
    for index in (
        SQLIndex(tiny_model, f"sqlite:///{tmp_path}/old.db"),
        FaissIndex(tiny_model, path=str(tmp_path / "old")),
    ):
        with index:
            assert {h.id for h in index.search("apple", k=20, mode="keyword")} == holding(
                texts, ids, metadatas, ["apple"]
            )


def test_sqlite_keyword_index_sees_writes_made_without_embedkit(tmp_path, tiny_model):
    url = f"sqlite:///{tmp_path}/d.db"
    with SQLIndex(tiny_model, url) as index:
        index.add(["plain words here"], ids=["x"])
        with sa.create_engine(url).begin() as conn:
            conn.exec_driver_sql("UPDATE documents SET text = 'a wombat appears' WHERE id = 'x'")
        assert [h.id for h in index.search("wombat", mode="keyword")] == ["x"]
        assert index.search("plain", mode="keyword") == []


def test_codes_and_quoted_phrases_match_as_phrases(make):
    """``Zorblax-7`` is one unit: its words side by side, in order. A document that only has a "7" (many
    of them) does not match; nor does one with both words apart. Quoted text is a phrase too."""
    index = make()
    index.add(
        [
            "Inflation rose 7 percent, then 7 percent again: 7, 7, 7.",
            "The Zorblax-7 module failed the audit.",
            "zorblax engineers counted 7 modules",
            "Green tea is steamed soon after picking.",
            "This tea is not green at all.",
        ],
        ids=["percent", "code", "apart", "phrase", "apart-words"],
    )
    assert [h.id for h in index.search("Zorblax-7", k=5, mode="keyword")] == ["code"]
    assert [h.id for h in index.search("zorblax 7", k=5, mode="keyword")][:1] in (["code"], ["apart"])
    assert [h.id for h in index.search('"green tea" picking', k=5, mode="keyword")] == ["phrase"]
    assert {h.id for h in index.search("green tea", k=5, mode="keyword")} == {"phrase", "apart-words"}
    assert index.search("Zorblax-7", k=1, mode="hybrid")[0].id == "code"
