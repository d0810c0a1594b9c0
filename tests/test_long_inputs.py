"""Texts of 10, 300 and 900 tokens give the vectors of sentence-transformers (the oracle), which cuts them
to the model's 256 tokens, on every path that embeds: encode, encode with token ids made ahead (as the
server and the chunker make them), the process pool, and the CLI's encode and add. The server's paths are
in tests/server, Ray's in tests/test_distributed.py."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import LENGTHS, texts_of

from embedkit import SentenceTransformer


def test_the_texts_have_the_lengths_they_claim(minilm):
    ids = minilm.tokenizer(texts_of(LENGTHS), add_special_tokens=True)["input_ids"]
    assert [len(row) for row in ids] == list(LENGTHS) and minilm.max_seq_length == 256


@pytest.mark.slow
@pytest.mark.parametrize("prompt", [None, "query: "])
def test_token_ids_made_ahead_are_cut_as_the_text_is(minilm, minilm_oracle, prompt):
    texts = texts_of(LENGTHS)
    want = minilm_oracle.encode(texts, prompt=prompt, convert_to_numpy=True)
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
def test_the_process_pool_cuts_as_the_oracle_does(minilm, minilm_oracle):
    texts = texts_of(LENGTHS)
    with minilm.start_multi_process_pool(["cpu", "cpu"]) as pool:
        got = minilm.encode(texts, pool=pool, chunk_size=1)
    np.testing.assert_allclose(got, minilm_oracle.encode(texts, convert_to_numpy=True), atol=2e-5)


@pytest.mark.slow
def test_the_cli_encodes_and_adds_long_texts_as_the_oracle_does(tmp_path, run_cli, minilm_path, minilm_oracle):
    from integrations import open_index

    texts = texts_of(LENGTHS)
    want = minilm_oracle.encode(texts, convert_to_numpy=True)
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    code, _, err = run_cli("encode", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.npy"), "-m", minilm_path, "-q")
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), want, atol=2e-5)
    db = f"sqlite:///{tmp_path}/kb.db"  # a document per line, not chunked: cut as encode cuts it
    code, _, err = run_cli(
        "add", db, str(tmp_path / "in.txt"), "--unit", "line", "--chunk-tokens", "0", "-m", minilm_path, "-q"
    )
    assert code == 0, err
    with open_index(db, SentenceTransformer(minilm_path, device="cpu"), create=False) as index:
        ids = sorted((r for r in index), key=lambda r: r.metadata["line"])
        stored = index.get_vectors([r.id for r in ids])
    np.testing.assert_allclose(stored, want / np.linalg.norm(want, axis=1, keepdims=True), atol=2e-5)
