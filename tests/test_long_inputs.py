"""Texts of 10, 300 and 900 tokens give the vectors of sentence-transformers (the oracle), which cuts them
to the model's 256 tokens, on every path that embeds: encode, encode with token ids made ahead (as the
server and the chunker make them), and the process pool. The server's paths are in tests/server."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit import SentenceTransformer

LENGTHS = (10, 300, 900)  # tokens, special tokens included: under the model's 256, under its 512 positions, over
WORDS = ("tea", "river", "stone", "cloud", "green", "house", "music", "light")


def texts_of(tokens: tuple[int, ...]) -> list[str]:
    """Texts of exactly these many BERT tokens ([CLS] and [SEP] included): single-piece words."""
    return [" ".join(WORDS[i % len(WORDS)] for i in range(n - 2)) for n in tokens]


@pytest.fixture(scope="module")
def minilm(minilm_path):
    return SentenceTransformer(minilm_path, device="cpu")


@pytest.fixture(scope="module")
def oracle(minilm_path):
    from sentence_transformers import SentenceTransformer as Oracle

    return Oracle(minilm_path, device="cpu")


def test_the_texts_have_the_lengths_they_claim(minilm):
    ids = minilm.tokenizer(texts_of(LENGTHS), add_special_tokens=True)["input_ids"]
    assert [len(row) for row in ids] == list(LENGTHS) and minilm.max_seq_length == 256


@pytest.mark.parametrize("prompt", [None, "query: "])
def test_token_ids_made_ahead_are_cut_as_the_text_is(minilm, oracle, prompt):
    texts = texts_of(LENGTHS)
    want = oracle.encode(texts, prompt=prompt, convert_to_numpy=True)
    ids = minilm.tokenizer([(prompt or "") + t for t in texts], add_special_tokens=True)["input_ids"]
    np.testing.assert_allclose(minilm.encode(texts, prompt=prompt), want, atol=2e-5)
    np.testing.assert_allclose(minilm.encode(texts, prompt=prompt, token_ids=ids), want, atol=2e-5)
    mixed = [ids[0], None, ids[2]]  # some made ahead, some not
    np.testing.assert_allclose(minilm.encode(texts, prompt=prompt, token_ids=mixed), want, atol=2e-5)


def test_cut_keeps_the_special_tokens_on_the_truncation_side(minilm):
    transformer = minilm[0]
    full = minilm.tokenizer(texts_of((900,)), add_special_tokens=True)["input_ids"][0]
    want = transformer.tokenize(texts_of((900,)))["input_ids"][0]
    assert transformer.cut(full) == want and len(want) == 256 and want[-1] == full[-1]
    assert transformer.cut(full[:200]) == full[:200]


@pytest.mark.slow
def test_the_process_pool_cuts_as_the_oracle_does(minilm, oracle):
    texts = texts_of(LENGTHS)
    with minilm.start_multi_process_pool(["cpu", "cpu"]) as pool:
        got = minilm.encode(texts, pool=pool, chunk_size=1)
    np.testing.assert_allclose(got, oracle.encode(texts, convert_to_numpy=True), atol=2e-5)
