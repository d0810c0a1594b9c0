"""Token-aware chunking: spans that cover every character, chunks that fit the model, and on every backend
one hit per document, the best chunk's span, whole documents from get, every chunk gone on delete."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from embedkit.chunking import Chunker
from integrations import FaissIndex, SQLIndex

STORES = ["faiss-flat-float32", "faiss-hnsw-int8", "sqlite", "postgres"]

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()


def long_text(n_words: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    words = [WORDS[i] + ("," if i % 7 == 0 else "") for i in rng.integers(0, len(WORDS), n_words)]
    words[n_words // 2] = "supercalifragilistic"  # one word of many tokens
    return "  ".join(words[:10]) + "\n\n" + " ".join(words[10:]) + " ."


def tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("size, overlap", [(16, 4), (32, 0), (50, 49), (5, 2)])
def test_spans_cover_every_character_and_fit(tiny_model, size, overlap):
    chunker = Chunker(tiny_model, size, overlap)
    text = long_text(200, size)
    (spans,) = chunker.spans([text])
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    for (a, b), (c, d) in zip(spans, spans[1:]):
        assert a < c <= b < d  # each next chunk starts inside or right after the last, and moves on
    inside_a_word = [a for a, _ in spans if a and text[a - 1].isalnum() and text[a].isalnum()]
    for a, b in spans:
        # chunks measured from a word start re-tokenize to what was measured; the pieces of a word longer
        # than a chunk (the docstring of embedkit.chunking) may come out a token or two longer
        assert tokens(tiny_model.tokenizer, text[a:b]) <= size + (2 if a in inside_a_word else 0)
    long_words = [w for w in text.split() if tokens(tiny_model.tokenizer, w) > size]
    assert not inside_a_word or long_words  # a chunk starts inside a word only if a word outgrows a chunk


def test_overlap_is_in_tokens(tiny_model):
    (spans,) = Chunker(tiny_model, 20, 6).spans([long_text(120, 1)])
    shared = [tokens(tiny_model.tokenizer, long_text(120, 1)[c:b]) for (_, b), (c, _) in zip(spans, spans[1:])]
    assert all(3 <= s <= 6 for s in shared[:-1]), shared  # word starts may shorten it, never lengthen it


def test_defaults_store_short_texts_whole_and_chunk_long_ones_at_the_model_limit(tiny_model):
    chunker = Chunker(tiny_model)
    room = tiny_model.max_seq_length - tokens(tiny_model.tokenizer, "passage: ") - 2
    assert chunker.size == room
    short, long = "a short text", long_text(400, 2)
    spans = chunker.spans([short, long])
    assert spans[0] is None and len(spans[1]) >= 3
    assert max(tokens(tiny_model.tokenizer, long[a:b]) for a, b in spans[1]) <= room
    assert Chunker(tiny_model, 0).spans([long]) == [None]


def test_chunker_arguments(tiny_model):
    from integrations.encoders import EmbeddingsEncoder

    with pytest.raises(ValueError, match="chunk_tokens=500 is more than the .* tokens the model takes"):
        Chunker(tiny_model, 500)
    with pytest.raises(ValueError, match="chunk_overlap=16 must be less than the chunk size of 16 tokens"):
        Chunker(tiny_model, 16, 16)
    with pytest.raises(ValueError, match="chunk_overlap must be an int >= 0"):
        Chunker(tiny_model, 16, -1)
    with pytest.raises(ValueError, match="chunk_tokens must be None, 0 \\(off\\) or a positive int"):
        Chunker(tiny_model, -3)

    class Fake:
        def embed_documents(self, texts):
            return [[1.0, 0.0]] * len(texts)

        def embed_query(self, text):
            return [1.0, 0.0]

    with pytest.raises(ValueError, match="chunk_tokens=16 needs an encoder with a tokenizer"):
        Chunker(EmbeddingsEncoder(Fake()), 16)
    assert Chunker(EmbeddingsEncoder(Fake())).spans(["x" * 10000]) == [None]  # nothing to measure with


def test_byte_level_bpe_offsets_cover_every_character():
    """A byte-level BPE tokenizer (GPT-2 style: offsets include leading spaces), trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator([long_text(300, s) for s in range(5)], trainers.BpeTrainer(vocab_size=300))

    class Encoder:
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw)
        max_seq_length, document_prompt = 64, ""

    text = long_text(250, 9) + " ünïcödé 東京 🍎"
    (spans,) = Chunker(Encoder(), 24, 5).spans([text])
    covered = np.zeros(len(text), bool)
    for a, b in spans:
        covered[a:b] = True
        assert tokens(Encoder.tokenizer, text[a:b]) <= 24
    assert covered.all() and spans[-1][1] == len(text)


# ----------------------------------------------------------------- on every backend


@pytest.fixture
def chunked(backend, tiny_model):
    index = backend.open(tiny_model, chunk_tokens=16, chunk_overlap=4)
    texts = {"long": long_text(150, 3), "other": long_text(80, 4), "s1": "tiny note one", "s2": "tiny note two"}
    metadatas = [{"kind": "long"}, {"kind": "long"}, {"kind": "short"}, {"kind": "short"}]
    index.add(list(texts.values()), metadatas, ids=list(texts))
    index.texts = texts
    yield index
    index.close()


def chunk_vector(index, text: str, span) -> np.ndarray:
    return index.encoder.encode_document([text[span[0] : span[1]]], normalize_embeddings=True)[0]


def test_documents_stay_whole_to_the_caller(chunked):
    texts = chunked.texts
    assert len(chunked) == 4
    assert [(r.id, r.text) for r in chunked.get(["long", "s1"])] == [("long", texts["long"]), ("s1", texts["s1"])]
    assert sorted(r.id for r in chunked) == sorted(texts)
    assert [r.id for r in chunked.get(filter={"kind": "long"})] == ["long", "other"]


def test_the_best_chunk_speaks_for_its_document(chunked):
    text = chunked.texts["long"]
    spans = chunked.chunker.spans([text])[0]
    assert len(spans) >= 8
    for span in (spans[3], spans[-1]):
        hits = chunked.search_by_vector(chunk_vector(chunked, text, span), k=4)
        assert [h.id for h in hits].count("long") == 1 and len(hits) == 4
        top = hits[0]
        assert (top.id, top.span, top.text) == ("long", span, text)
        assert top.passage == text[span[0] : span[1]]
        if chunked.__class__.__name__ == "SQLIndex" or chunked.precision == "float32":
            assert top.score == pytest.approx(1.0, abs=1e-4)
    short = chunked.search_by_vector(chunk_vector(chunked, "tiny note one", (0, 13)), k=1)[0]
    assert (short.id, short.span, short.passage) == ("s1", None, "tiny note one")


def test_k_stays_exact_when_one_document_crowds_the_top(chunked):
    text = chunked.texts["long"]
    spans = chunked.chunker.spans([text])[0]
    query = np.mean([chunk_vector(chunked, text, s) for s in spans], axis=0)
    for k in (1, 2, 3, 4, 10):
        hits = chunked.search_by_vector(query, k=k)
        assert len(hits) == min(k, 4) and len({h.id for h in hits}) == len(hits)
    assert {h.id for h in chunked.search_by_vector(query, k=3, filter={"kind": "short"})} == {"s1", "s2"}


def test_delete_removes_every_chunk(chunked):
    text = chunked.texts["long"]
    probe = chunk_vector(chunked, text, chunked.chunker.spans([text])[0][5])
    assert chunked.delete(["long"]) == 1
    assert len(chunked) == 3 and chunked.get(["long"]) == []
    hits = chunked.search_by_vector(probe, k=10)
    assert "long" not in {h.id for h in hits} and len(hits) == 3
    assert chunked.delete(filter={"kind": "long"}) == 1  # "other", with all its chunks
    assert {h.id for h in chunked.search_by_vector(probe, k=10)} == {"s1", "s2"}


def test_re_adding_a_shorter_text_drops_the_old_chunks(chunked):
    text = chunked.texts["long"]
    probe = chunk_vector(chunked, text, chunked.chunker.spans([text])[0][-1])
    chunked.add(["now short"], [{"kind": "short"}], ids=["long"])
    hits = chunked.search_by_vector(probe, k=10)
    assert [h.id for h in hits].count("long") == 1 and len(hits) == 4
    assert [h for h in hits if h.id == "long"][0].span is None and len(chunked) == 4


def test_metadata_updates_reach_every_chunk(chunked):
    text = chunked.texts["long"]
    probe = chunk_vector(chunked, text, chunked.chunker.spans([text])[0][-2])
    chunked.update_metadata(["long"], [{"kind": "renamed"}])
    found = chunked.search_by_vector(probe, k=1, filter={"kind": "renamed"})
    assert [(h.id, h.metadata) for h in found] == [("long", {"kind": "renamed"})]
    assert "long" not in {h.id for h in chunked.search_by_vector(probe, k=10, filter={"kind": "long"})}


def test_hybrid_and_keyword_search_over_chunks(chunked):
    chunked.add([chunked.texts["long"] + " zebraword"], [{"kind": "long"}], ids=["long"])  # a word in the last chunk
    assert [h.id for h in chunked.search("zebraword", mode="keyword")] == ["long"]
    hits = chunked.search("zebraword", k=4, mode="hybrid")
    assert [h.id for h in hits].count("long") == 1 and hits[0].id == "long" and len(hits) == 4
    assert hits[0].ranks["keyword"] == 1 and hits[0].text.endswith("zebraword")


def test_chunk_spans_survive_reopening(chunked, backend, tiny_model):
    text = chunked.texts["long"]
    span = chunked.chunker.spans([text])[0][2]
    probe = chunk_vector(chunked, text, span)
    chunked.save()
    with backend.open(tiny_model) as again:
        assert again.search_by_vector(probe, k=1)[0].span == span


def test_ids_may_not_hold_the_chunk_separator(chunked):
    with pytest.raises(ValueError, match="id at index 0 contains \\\\x1f"):
        chunked.add(["x"], ids=["a\x1fb"])


def test_default_chunking_never_truncates_and_zero_turns_it_off(tmp_path, tiny_model, caplog):
    text = long_text(600, 5)
    with caplog.at_level(logging.WARNING):
        with SQLIndex(tiny_model, f"sqlite:///{tmp_path}/a.db") as index:
            index.add([text], ids=["a"])
            assert index.get(["a"])[0].text == text and len(index) == 1
    assert "truncated" not in caplog.text
    with caplog.at_level(logging.WARNING):
        with SQLIndex(tiny_model, f"sqlite:///{tmp_path}/b.db", chunk_tokens=0) as index:
            index.add([text], ids=["a"])
    assert "were truncated" in caplog.text


def test_chunking_leaves_keyword_scores_alone(backend, tiny_model, tmp_path):
    """Later chunks hold no text, and stay out of the keyword index's statistics: keyword scores with
    chunking equal those without."""
    texts = [long_text(150, 3), long_text(80, 4), "tiny note on alpha", "gamma and delta"]
    scores = []
    for n, chunk_tokens in enumerate((16, 0)):
        if backend.name.startswith("faiss"):
            index = FaissIndex(tiny_model, path=f"{backend.path}{n}", chunk_tokens=chunk_tokens, chunk_overlap=4)
        else:
            index = SQLIndex(
                tiny_model, backend.url, table=f"{backend.table}{n}", chunk_tokens=chunk_tokens, chunk_overlap=4
            )
        with index:
            index.add(texts, ids=["a", "b", "c", "d"])
            scores.append([(h.id, round(h.score, 6)) for h in index.search("alpha gamma sigma", k=4, mode="keyword")])
    assert scores[0] == scores[1] and len(scores[0]) == 4


def test_each_text_is_tokenized_once_per_add(tiny_model, tmp_path, monkeypatch):
    """The chunker's one pass gives the encoder its ids for the texts stored whole: the encoder tokenizes only
    the chunks of long texts, and every stored vector equals a plain encode of its piece (the oracle: the
    model's own tokenization)."""
    texts = ["a short text", "another one, with a comma", long_text(400, 3), "été à la plage"]
    index = SQLIndex(tiny_model, f"sqlite:///{tmp_path}/once.db", chunk_tokens=40, chunk_overlap=8)
    plan = index.chunker.plan(texts)
    chunked = len(plan.spans[2])
    assert [s is None for s in plan.spans] == [True, True, False, True] and chunked > 3
    for text, ids in zip(texts, plan.token_ids):
        if ids is not None:  # the oracle: the tokenizer's own call on prompt + text
            assert ids == tiny_model.tokenizer("passage: " + text)["input_ids"]
    seen = []
    tokenize = tiny_model.transformer.tokenize
    monkeypatch.setattr(tiny_model.transformer, "tokenize", lambda batch: seen.extend(batch) or tokenize(batch))
    index.add(texts, ids=["s", "o", "long", "fr"])
    seen = [t for t in seen if t != "passage: "]  # the prompt alone is measured for pooling (include_prompt)
    assert len(seen) == chunked and all(t.startswith("passage: ") for t in seen)  # only the long text's chunks
    monkeypatch.undo()
    stored = index.get_vectors(["s", "o", "fr"])
    expected = tiny_model.encode_document([texts[0], texts[1], texts[3]], normalize_embeddings=True)
    np.testing.assert_allclose(stored, expected, atol=1e-6)
    pieces = [texts[2][a:b] for a, b in plan.spans[2]]
    hit = index.search_by_vector(tiny_model.encode_document(pieces[1], normalize_embeddings=True), k=1)[0]
    assert hit.id == "long" and hit.span == plan.spans[2][1] and hit.score == pytest.approx(1.0, abs=1e-5)


def test_token_ids_are_checked_and_ignored_where_they_cannot_hold(tiny_model):
    with pytest.raises(ValueError, match="token_ids needs one entry per sentence"):
        tiny_model.encode(["a", "b"], token_ids=[None])
    wrong = tiny_model.tokenizer("something else entirely")["input_ids"]
    lowering = tiny_model.transformer.do_lower_case
    try:
        tiny_model.transformer.do_lower_case = True  # ids made before lowering would not be the model's
        np.testing.assert_allclose(
            tiny_model.encode(["Hello"], token_ids=[wrong]), tiny_model.encode(["Hello"]), atol=1e-6
        )
    finally:
        tiny_model.transformer.do_lower_case = lowering
    taken = tiny_model.encode(["Hello"], token_ids=[wrong])  # taken as given otherwise (the caller's promise)
    np.testing.assert_allclose(taken, tiny_model.encode(["something else entirely"]), atol=1e-6)


def test_embed_long_stores_a_long_text_as_add_does_and_keeps_short_texts_given_vectors(backend, tiny_model):
    """What the LlamaIndex and Haystack adapters rely on: ``add_embeddings(embed_long=True)`` keeps a short
    text's given vector, embeds a None row, and stores a long text as chunks embedded by the model (its
    given vector saw only its start), each chunk with the text's given sparse vector."""
    from store_workers import HashSparse

    index = backend.open(tiny_model, chunk_tokens=16, chunk_overlap=4, sparse_encoder=HashSparse())
    tol = 1e-5 if isinstance(index, SQLIndex) or index.precision == "float32" else 2e-2  # int8 codes
    rng = np.random.default_rng(0)
    given = rng.normal(size=(3, index.dimension)).astype(np.float32)
    texts = {"long": long_text(150, 3), "short": "tiny note one", "none": "tiny note two"}
    sparse = [{7: 1.0}, {8: 1.0}, {9: 1.0}]
    vectors = [given[0], given[1], None]
    index.add_embeddings(vectors, list(texts.values()), ids=list(texts), sparse_embeddings=sparse, embed_long=True)
    assert len(index) == 3 and index.get(["long"])[0].text == texts["long"]
    top = index.search_by_vector(given[1], k=1)[0]
    assert (top.id, top.span) == ("short", None) and top.score == pytest.approx(1.0, abs=tol)
    want = tiny_model.encode_document(["tiny note two"], normalize_embeddings=True)[0]
    np.testing.assert_allclose(index.get_vectors(["none"])[0], want, atol=tol if tol > 1e-5 else 1e-6)
    (spans,) = Chunker(tiny_model, 16, 4).spans([texts["long"]])
    assert len(spans) >= 3
    for span in spans:  # every chunk is the model's vector of its piece
        hit = index.search_by_vector(chunk_vector(index, texts["long"], span), k=1)[0]
        assert (hit.id, hit.span) == ("long", span) and hit.score == pytest.approx(1.0, abs=tol)
    assert index.search_by_vector(given[0], k=3)[0].score < 0.99  # the given vector of the long text is gone
    assert [h.id for h in index.search_by_sparse_vector({7: 1.0}, k=5)] == ["long"]
    assert [h.id for h in index.search_by_sparse_vector({9: 1.0}, k=5)] == ["none"]

    plain = backend.open(tiny_model, chunk_tokens=16, chunk_overlap=4, sparse_encoder=HashSparse())
    plain.add_embeddings(given[:1], [texts["long"]], ids=["long"], sparse_embeddings=sparse[:1])  # as given
    hit = plain.search_by_vector(given[0], k=1)[0]
    assert (hit.id, hit.span) == ("long", None) and hit.score == pytest.approx(1.0, abs=tol)


def test_embed_long_checks_its_rows(tiny_model, tmp_path):
    from integrations.errors import InvalidInputError, WrongTypeError

    with SQLIndex(tiny_model, f"sqlite:///{tmp_path}/a.db") as index:
        with pytest.raises(WrongTypeError, match="embeddings must be a list of vectors or None, got NoneType"):
            index.add_embeddings(None, ["a"], embed_long=True)
        with pytest.raises(InvalidInputError, match="got 1 embeddings for 2 texts"):
            index.add_embeddings([None], ["a", "b"], embed_long=True)
        with pytest.raises(InvalidInputError, match=r"embeddings must have shape \[n, 32\], got \[1, 3\]"):
            index.add_embeddings([None, [1.0, 0.0, 0.0]], ["a", "b"], embed_long=True)
        with pytest.raises(InvalidInputError, match="embedding at index 0 is all zeros"):
            index.add_embeddings([np.zeros(32), None], ["a", "b"], embed_long=True)
        assert len(index) == 0
