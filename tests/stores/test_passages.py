"""Passages first: on every backend a keyword hit on a chunked document carries the chunk that holds the
query's words (the keyword index holds whole documents), and every hit's ``highlights`` are where the query's
words stand in its passage, found with the keyword index's own stemming and phrase rules."""

from __future__ import annotations

import pytest

from integrations._shared import passages
from integrations.records import Hit

FILLER = " ".join(f"filler{i}" for i in range(300))
TAIL = " ".join(f"tail{i}" for i in range(300))
LONG = f"{FILLER} The zebrafish quokka brews here. {TAIL}"


@pytest.fixture
def chunked(backend, tiny_model):
    index = backend.open(tiny_model, chunk_tokens=32, chunk_overlap=4)
    index.add([LONG, "Tea is brewed from leaves.", "A note on IL-6 and on 6 things"], ids=["long", "tea", "il"])
    yield index
    index.close()


def chunk_holding(index, text: str, word: str) -> list[tuple[int, int]]:
    """The chunker's spans of ``text`` (the chunks stored) that hold ``word``."""
    return [span for span in index.chunker.spans([text])[0] if word in text[span[0] : span[1]]]


def marked(hit: Hit) -> list[str]:
    return [hit.passage[a:b] for a, b in hit.highlights]


def test_a_keyword_hit_carries_the_chunk_that_holds_the_word(chunked):
    (hit,) = chunked.search("zebrafish", mode="keyword")
    assert hit.id == "long" and hit.text == LONG
    assert hit.span in chunk_holding(chunked, LONG, "zebrafish")
    assert marked(hit) == ["zebrafish"]
    (first, *_) = chunked.search("filler3", mode="keyword")
    assert first.id == "long" and first.span == chunked.chunker.spans([LONG])[0][0]


def test_a_hybrid_hit_keeps_the_vector_legs_chunk_or_gets_the_keyword_one(chunked):
    hits = chunked.search("zebrafish quokka", k=3, mode="hybrid")
    long = next(h for h in hits if h.id == "long")
    if "vector" in long.ranks:  # the vector leg's best chunk, as vector search gives it
        assert long.span == next(h for h in chunked.search("zebrafish quokka", k=3) if h.id == "long").span
    else:
        assert long.span in chunk_holding(chunked, LONG, "zebrafish")
    only_keyword = chunked.search("zebrafish", k=3, mode="hybrid", weights={"keyword": 1.0})
    assert only_keyword[0].span in chunk_holding(chunked, LONG, "zebrafish")


def test_highlights_follow_the_keyword_index_stemming_and_codes(chunked):
    (tea,) = [h for h in chunked.search("brewing teas", k=3, mode="keyword") if h.id == "tea"]
    assert marked(tea) == ["Tea", "brewed"]  # porter: brewing, brewed -> brew; teas -> tea
    (il,) = chunked.search("IL-6", mode="keyword")
    assert marked(il) == ["IL-6"]  # one phrase instance, one range (FTS5's highlight()); not the "6" of "6 things"
    vector = chunked.search("leaves", k=3)
    assert marked(next(h for h in vector if h.id == "tea")) == ["leaves"]  # every mode has them
    assert all(h.highlights == [] for h in chunked.search("**", k=3, mode="vector"))  # a query without words
    assert all(h.highlights == [] for h in chunked.search_by_vector(chunked.encoder.encode_query(["leaves"])[0]))


def test_a_reranker_scores_the_keyword_hits_best_chunk(chunked):
    seen = []

    def rerank(query, texts):
        seen.extend(texts)
        return [float(len(t)) for t in texts]

    chunked.search("zebrafish", k=1, mode="keyword", rerank=rerank)
    (passage,) = seen
    assert "zebrafish" in passage and len(passage) < len(LONG) // 3


def test_spans_that_do_not_tile_the_text_read_with_the_hit_are_not_used():
    """A document rewritten between the keyword read and the read of its chunks keeps the span it came with."""
    text = "alpha " * 20 + "zebra"
    hit = Hit("d", text, {}, 1.0, span=(0, 10))
    passages.best_chunks([[hit]], ["zebra"], lambda ids: {"d": [(0, 50), (50, 90)]})  # the old, shorter text
    assert hit.span == (0, 10)
    passages.best_chunks([[hit]], ["zebra"], lambda ids: {"d": [(0, 60), (56, len(text))]})
    assert hit.span == (56, len(text))


def test_highlights_are_offsets_into_the_passage_even_with_marker_characters():
    text = "\x02odd\x03 text with zebra and Zebras"
    hit = Hit("d", text, {}, 1.0, query="zebra")
    assert hit.highlights == [(16, 21), (26, 32)] and marked(hit) == ["zebra", "Zebras"]
    assert Hit("d", text, {}, 1.0).highlights == []  # no query (search_by_vector): none


def test_the_snippet_and_the_headings_follow_the_densest_matches():
    from integrations._shared.hit_view import heading_path, snippet

    text = "# Intro\n\nA rank word early. " + "pad " * 60 + "\n\n## Fusion\n\nreciprocal rank fusion fuses ranks."
    hit = Hit("d", text, {"source": "a.md"}, 1.0, query="reciprocal rank fusion")
    assert [hit.passage[a:b] for a, b in hit.highlights][:3] == ["rank", "Fusion", "reciprocal"]  # a lone one first
    line = snippet(hit, 60, lambda w: w.upper())
    assert "RECIPROCAL RANK FUSION" in line and "early" not in line and line.startswith("...")
    assert heading_path(hit) == ["Intro", "Fusion"]
    assert heading_path(Hit("d", text, {"source": "a.txt", "headings": ["Kept"]}, 1.0, query="rank")) == ["Kept"]
