"""embedkit.CrossEncoder against the sentence-transformers oracle: scores, ranks, folders both ways, pair
tokenization, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sentence_transformers import CrossEncoder as OracleCrossEncoder
from torch import nn

from embedkit import CrossEncoder

QUERY = "how do cats sleep"
PASSAGES = [
    "Cats sleep for most of the day, often in warm places.",
    "Bond yields rose sharply after the announcement.",
    "Kittens nap in the sun and wake up hungry.",
    "A recipe for tomato soup with basil.",
    "",
    "Über Katzen: sie schlafen gern, manchmal sechzehn Stunden am Tag. " * 6,
]
PAIRS = [(QUERY, p) for p in PASSAGES] + [("a b c " * 80, "d e f " * 90), ("x", "long " * 300)]


@pytest.mark.slow
@pytest.mark.parametrize("labels", [1, 3])
def test_predict_matches_the_oracle(cross_dirs, labels):
    ours = CrossEncoder(cross_dirs[labels], device="cpu")
    oracle = OracleCrossEncoder(cross_dirs[labels], device="cpu")
    np.testing.assert_allclose(ours.predict(PAIRS), oracle.predict(PAIRS), atol=1e-5)
    one, theirs = ours.predict(PAIRS[0]), oracle.predict(PAIRS[0])
    assert np.shape(one) == np.shape(theirs) == (() if labels == 1 else (3,))
    np.testing.assert_allclose(one, theirs, atol=1e-5)
    for options in ({"apply_softmax": True}, {"activation_fn": nn.Tanh()}, {"activation_fn": nn.Identity()}):
        np.testing.assert_allclose(ours.predict(PAIRS, **options), oracle.predict(PAIRS, **options), atol=1e-5)
    tensor = ours.predict(PAIRS, convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor) and tensor.shape[0] == len(PAIRS)
    assert ours.predict(inputs=PAIRS[:2]).shape == oracle.predict(PAIRS[:2]).shape  # the 6.x keyword


@pytest.mark.slow
def test_default_activation_follows_the_labels(cross_dirs):
    assert isinstance(CrossEncoder(cross_dirs[1], device="cpu").activation_fn, nn.Sigmoid)
    assert isinstance(CrossEncoder(cross_dirs[3], device="cpu").activation_fn, nn.Identity)
    scores = CrossEncoder(cross_dirs[1], device="cpu").predict(PAIRS)
    assert ((scores > 0) & (scores < 1)).all()


def test_max_length_truncates_as_the_oracle_does(cross_dirs):
    ours = CrossEncoder(cross_dirs[1], max_length=24, device="cpu")
    oracle = OracleCrossEncoder(cross_dirs[1], max_length=24, device="cpu")
    np.testing.assert_allclose(ours.predict(PAIRS), oracle.predict(PAIRS), atol=1e-5)
    assert ours.max_length == 24


@pytest.mark.slow
def test_pairs_tokenize_to_the_tokenizers_own_ids(cross_dirs):
    """Each side tokenized only as far as truncation keeps gives the ids of a full call, longest_first."""
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat über naïve 東京 don't x-ray 42 , . ! supercalifragilistic".split()
    pairs = list(PAIRS)
    for _ in range(300):
        a = " ".join(rng.choice(words, rng.integers(0, 120)))
        b = "  ".join(rng.choice(words, rng.integers(0, 160)))
        pairs.append((a, b))
    for max_length in (16, 37, 128):
        model = CrossEncoder(cross_dirs[1], max_length=max_length, device="cpu")
        assert model._pairs is None or model._pairs.prefixes
        ours = model.tokenize(pairs)
        full = model.tokenizer([a for a, _ in pairs], [b for _, b in pairs], truncation=True, max_length=max_length)
        assert ours["input_ids"] == full["input_ids"]
        assert ours["token_type_ids"] == full["token_type_ids"]
        assert model._pairs.prefixes  # the fast path was the one taken


@pytest.mark.slow
def test_rank_matches_the_oracle(cross_dirs):
    ours = CrossEncoder(cross_dirs[1], device="cpu")
    oracle = OracleCrossEncoder(cross_dirs[1], device="cpu")
    mine = ours.rank(QUERY, PASSAGES, return_documents=True)
    theirs = oracle.rank(QUERY, PASSAGES, return_documents=True)
    assert [r["corpus_id"] for r in mine] == [r["corpus_id"] for r in theirs]
    np.testing.assert_allclose([r["score"] for r in mine], [r["score"] for r in theirs], atol=1e-5)
    assert [r["text"] for r in mine] == [PASSAGES[r["corpus_id"]] for r in mine]
    assert ours.rank(QUERY, PASSAGES, top_k=2) == [{k: r[k] for k in ("corpus_id", "score")} for r in mine[:2]]
    assert ours.rank(QUERY, []) == oracle.rank(QUERY, []) == []


@pytest.mark.slow
def test_folders_load_both_ways(cross_dirs, tmp_path):
    """A folder saved here loads in sentence-transformers with identical scores, and the other way round
    (the fixtures are sentence-transformers' own); a plain Hugging Face folder loads too."""
    ours = CrossEncoder(cross_dirs[3], activation_fn=nn.Tanh(), device="cpu")
    ours.save(str(tmp_path / "ours"))
    back = OracleCrossEncoder(str(tmp_path / "ours"), device="cpu")
    assert isinstance(back.activation_fn, nn.Tanh)
    np.testing.assert_allclose(back.predict(PAIRS), ours.predict(PAIRS), atol=1e-5)
    again = CrossEncoder(str(tmp_path / "ours"), device="cpu")
    assert isinstance(again.activation_fn, nn.Tanh)
    np.testing.assert_allclose(again.predict(PAIRS), ours.predict(PAIRS), atol=1e-6)
    plain = CrossEncoder(cross_dirs["plain1"], device="cpu")
    np.testing.assert_allclose(
        plain.predict(PAIRS), OracleCrossEncoder(cross_dirs["plain1"], device="cpu").predict(PAIRS), atol=1e-5
    )


def test_an_untrusted_saved_activation_falls_back_to_the_default(cross_dirs, tmp_path, caplog):
    import json
    import shutil

    folder = tmp_path / "odd"
    shutil.copytree(cross_dirs[1], folder)
    config = json.loads((folder / "config_sentence_transformers.json").read_text())
    (folder / "config_sentence_transformers.json").write_text(json.dumps(dict(config, activation_fn="os.system")))
    model = CrossEncoder(str(folder), device="cpu")
    assert isinstance(model.activation_fn, nn.Sigmoid) and "not a torch class" in caplog.text


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda m: m.predict(None), TypeError, "expects a \\(query, passage\\) pair or a list of them, got NoneType"),
        (lambda m: m.predict("just a string"), TypeError, "got str"),
        (lambda m: m.predict([("a", "b"), ("only one",)]), TypeError, "pair at index 1 must be two str"),
        (lambda m: m.predict([("a", 2)]), TypeError, "pair at index 0 must be two str"),
        (lambda m: m.predict([("a", "b")], batch_size=0), ValueError, "batch_size must be a positive int"),
        (lambda m: m.predict([("a", "b")], normalize=True), ValueError, "unknown keyword arguments: \\['normalize'\\]"),
        (lambda m: m.rank("q", ["a"], top_k=0), ValueError, "top_k must be a positive int, got 0"),
        (lambda m: m.rank(None, ["a"]), TypeError, "query must be a str"),
        (lambda m: m.rank("q", None), TypeError, "documents must be a list of str"),
    ],
)
def test_bad_input_gets_a_clear_error(cross_dirs, call, error, message):
    with pytest.raises(error, match=message):
        call(CrossEncoder(cross_dirs[1], device="cpu"))


def test_empty_input_gives_empty_scores_as_the_oracle_does(cross_dirs):
    ours = CrossEncoder(cross_dirs[1], device="cpu").predict([])
    theirs = OracleCrossEncoder(cross_dirs[1], device="cpu").predict([])
    assert ours.shape == theirs.shape == (0,)


def test_rank_needs_one_label_and_a_head_is_required(cross_dirs, minilm_path):
    with pytest.raises(ValueError, match="rank\\(\\) needs a model with one label; this one has 3"):
        CrossEncoder(cross_dirs[3], device="cpu").rank("q", ["a"])
    with pytest.raises(ValueError, match="holds a BertModel, which has no classification head"):
        CrossEncoder(minilm_path, device="cpu")
    with pytest.raises(ValueError, match="backend must be one of"):
        CrossEncoder(cross_dirs[1], backend="tensorrt")


@pytest.mark.slow
def test_onnx_backend_scores_close_to_torch(cross_dirs, tmp_path, monkeypatch):
    """int8 weights: close to fp32, not equal; the exported graph is cached outside the model folder and
    saved with the model."""
    import os

    monkeypatch.setenv("EMBEDKIT_HOME", str(tmp_path / "home"))
    before = sorted(os.listdir(cross_dirs[1]))
    fast = CrossEncoder(cross_dirs[1], backend="onnx")
    exact = CrossEncoder(cross_dirs[1], device="cpu")
    np.testing.assert_allclose(fast.predict(PAIRS), exact.predict(PAIRS), atol=0.02)
    assert sorted(os.listdir(cross_dirs[1])) == before and (tmp_path / "home" / "onnx").is_dir()
    fast.save(str(tmp_path / "saved"))
    assert (tmp_path / "saved" / "onnx" / "embedkit_qint8.onnx").is_file()
    again = CrossEncoder(str(tmp_path / "saved"), backend="onnx")
    np.testing.assert_allclose(again.predict(PAIRS), fast.predict(PAIRS), atol=1e-6)
    with pytest.raises(ValueError, match="the onnx backend runs on the CPU"):
        CrossEncoder(cross_dirs[1], backend="onnx", device="cuda")
