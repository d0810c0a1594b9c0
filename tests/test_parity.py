"""Embeddings match the sentence-transformers oracle (max abs difference <= 1e-5, float32, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import TEXTS
from sentence_transformers import SentenceTransformer as OracleST
from sentence_transformers import quantize_embeddings as oracle_quantize

from embedkit import SentenceTransformer, quantize_embeddings

TOL = 1e-5
LONG = "word " * 600  # far beyond max_seq_length: both must truncate the same way


def close(a, b, tol=TOL):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0
    assert diff <= tol, f"max abs difference {diff:.3g} > {tol}"


def test_minilm_matches_oracle(minilm, minilm_oracle):
    texts = TEXTS + [LONG]
    close(minilm.encode(texts, batch_size=3), minilm_oracle.encode(texts, batch_size=3))
    assert minilm.get_sentence_embedding_dimension() == 384
    assert minilm.max_seq_length == minilm_oracle.max_seq_length == 256


@pytest.mark.parametrize("truncate_dim", [None, 64])
@pytest.mark.parametrize("normalize", [False, True])
def test_minilm_truncate_and_normalize(minilm, minilm_oracle, truncate_dim, normalize):
    ours = minilm.encode(TEXTS, truncate_dim=truncate_dim, normalize_embeddings=normalize)
    theirs = minilm_oracle.encode(TEXTS, truncate_dim=truncate_dim, normalize_embeddings=normalize)
    close(ours, theirs)
    if normalize:
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


def test_minilm_single_string_and_tensor(minilm, minilm_oracle):
    one = minilm.encode("What is X?")
    assert one.shape == (384,)
    close(one, minilm_oracle.encode("What is X?"))
    t = minilm.encode(TEXTS[:3], convert_to_tensor=True)
    assert isinstance(t, torch.Tensor) and t.shape == (3, 384)
    close(t.numpy(), minilm_oracle.encode(TEXTS[:3]))


POOLINGS = ["cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken", ("cls", "mean", "max")]


@pytest.mark.parametrize("pooling_mode", POOLINGS)
def test_tiny_pooling_modes(save_oracle, pooling_mode):
    path = save_oracle(pooling_mode=pooling_mode)
    ours = SentenceTransformer(path, device="cpu")
    close(ours.encode(TEXTS, batch_size=3), OracleST(path, device="cpu").encode(TEXTS, batch_size=3))
    assert ours.get_sentence_embedding_dimension() == 32 * (3 if isinstance(pooling_mode, tuple) else 1)


@pytest.mark.slow
@pytest.mark.parametrize("activation", [torch.nn.Tanh(), torch.nn.Identity(), torch.nn.GELU()])
@pytest.mark.parametrize("normalize", [False, True])
def test_tiny_dense_and_normalize(save_oracle, activation, normalize):
    path = save_oracle(pooling_mode="mean", dense=(16, activation), normalize=normalize)
    ours = SentenceTransformer(path, device="cpu")
    emb = ours.encode(TEXTS)
    assert emb.shape == (len(TEXTS), 16)
    close(emb, OracleST(path, device="cpu").encode(TEXTS))


@pytest.mark.slow
@pytest.mark.parametrize("include_prompt", [True, False])
@pytest.mark.parametrize("pooling_mode", ["mean", "cls", "weightedmean", "lasttoken"])
def test_tiny_prompts_and_include_prompt(save_oracle, include_prompt, pooling_mode):
    prompts = {"query": "query: ", "passage": "passage: ", "classify": "Classify the topic of this text: "}
    path = save_oracle(pooling_mode=pooling_mode, include_prompt=include_prompt, prompts=prompts)
    ours, oracle = SentenceTransformer(path, device="cpu"), OracleST(path, device="cpu")
    for name in prompts:
        close(ours.encode(TEXTS, prompt_name=name), oracle.encode(TEXTS, prompt_name=name))
    close(ours.encode(TEXTS, prompt="custom: "), oracle.encode(TEXTS, prompt="custom: "))
    close(ours.encode_query(TEXTS), oracle.encode_query(TEXTS))
    # The oracle's encode_document stops at its built-in empty "document" slot; ours picks "passage".
    close(ours.encode_document(TEXTS), oracle.encode(TEXTS, prompt_name="passage"))
    if not include_prompt and pooling_mode != "lasttoken":
        # Excluding the prompt really changes the result compared with the plain text.
        assert not np.allclose(ours.encode(TEXTS[:1]), ours.encode(TEXTS[:1], prompt_name="classify"))


def test_default_prompt_name(save_oracle):
    path = save_oracle(prompts={"query": "query: "}, default_prompt_name="query")
    ours, oracle = SentenceTransformer(path, device="cpu"), OracleST(path, device="cpu")
    assert ours.default_prompt_name == "query"
    close(ours.encode(TEXTS), oracle.encode(TEXTS))
    close(ours.encode(TEXTS, prompt=""), oracle.encode(TEXTS, prompt=""))


def test_max_seq_length_setting_matches(save_oracle):
    path = save_oracle(max_seq_length=16)
    ours, oracle = SentenceTransformer(path, device="cpu"), OracleST(path, device="cpu")
    assert ours.max_seq_length == 16
    close(ours.encode(TEXTS), oracle.encode(TEXTS))
    ours.max_seq_length = oracle.max_seq_length = 8
    close(ours.encode(TEXTS), oracle.encode(TEXTS))


@pytest.mark.slow
def test_token_embeddings_match(save_oracle):
    path = save_oracle()
    ours = SentenceTransformer(path, device="cpu").encode(TEXTS, output_value="token_embeddings")
    theirs = OracleST(path, device="cpu").encode(TEXTS, output_value="token_embeddings")
    assert len(ours) == len(theirs) == len(TEXTS)
    for a, b in zip(ours, theirs):
        close(a.numpy(), b.numpy())


def test_plain_transformers_model_gets_mean_pooling(bert_dir):
    ours = SentenceTransformer(bert_dir, device="cpu")
    assert [type(m).__name__ for m in ours] == ["Transformer", "Pooling"]
    assert ours[1].pooling_mode == "mean"
    close(ours.encode(TEXTS), OracleST(bert_dir, device="cpu").encode(TEXTS))


def test_causal_lm_gets_last_token_pooling(tmp_path, minilm_path):
    """A plain *ForCausalLM folder pools the last real token; checked against a hand-run forward pass."""
    from transformers import AutoModel, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=30522,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(tmp_path)
    ours = SentenceTransformer(str(tmp_path), device="cpu")
    assert ours[1].pooling_mode == "lasttoken"
    assert not ours.transformer.bidirectional  # padded batches keep the causal mask transformers builds
    texts = ["one", "a somewhat longer input text", "two words"]
    emb = ours.encode(texts)
    base, tok = AutoModel.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)
    for text, row in zip(texts, emb):
        with torch.no_grad():
            hidden = base(**tok(text, return_tensors="pt", return_token_type_ids=False)).last_hidden_state
        close(row, hidden[0, -1].numpy())


# ----------------------------------------------------------------- saved folders, both directions


def test_embedkit_save_loads_in_oracle(save_oracle, tmp_path):
    src = save_oracle(
        pooling_mode=("cls", "mean"),
        dense=(16, torch.nn.Tanh()),
        normalize=True,
        prompts={"query": "q: ", "document": "d: "},
    )
    ours = SentenceTransformer(src, device="cpu")
    ours.save(str(tmp_path / "out"))
    reloaded = OracleST(str(tmp_path / "out"), device="cpu")
    close(ours.encode(TEXTS), reloaded.encode(TEXTS))
    close(ours.encode_query(TEXTS), reloaded.encode_query(TEXTS))
    close(ours.encode_document(TEXTS), reloaded.encode_document(TEXTS))
    assert reloaded.prompts["query"] == "q: " and reloaded.similarity_fn_name == "cosine"
    assert (tmp_path / "out" / "model.safetensors").exists()
    assert (tmp_path / "out" / "2_Dense" / "model.safetensors").exists()
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.pkl"))


def test_oracle_save_loads_in_embedkit(minilm_oracle, minilm, tmp_path):
    minilm_oracle.save(str(tmp_path / "st"))
    ours = SentenceTransformer(str(tmp_path / "st"), device="cpu")
    close(ours.encode(TEXTS), minilm_oracle.encode(TEXTS))
    close(ours.encode(TEXTS), minilm.encode(TEXTS))


@pytest.mark.slow
def test_minilm_round_trip_through_embedkit(minilm, minilm_oracle, tmp_path):
    minilm.save_pretrained(str(tmp_path / "ek"))
    close(OracleST(str(tmp_path / "ek"), device="cpu").encode(TEXTS), minilm_oracle.encode(TEXTS))
    close(SentenceTransformer(str(tmp_path / "ek"), device="cpu").encode(TEXTS), minilm.encode(TEXTS))


# ----------------------------------------------------------------- quantization, bit for bit


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_quantization_bit_identical(minilm, minilm_oracle, precision):
    texts = TEXTS * 2
    minilm.parallel_batches = False  # the oracle's batches, so the same floats go in
    try:
        ours = minilm.encode(texts, precision=precision)
    finally:
        minilm.parallel_batches = True
    theirs = minilm_oracle.encode(texts, precision=precision)
    assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
    emb = minilm.encode(texts)  # batches side by side: floats within 1e-5, codes from the same quantizer
    assert np.array_equal(minilm.encode(texts, precision=precision), quantize_embeddings(emb, precision))
    assert np.array_equal(quantize_embeddings(emb, precision), oracle_quantize(emb, precision))
    calib = minilm.encode(TEXTS[::-1] + ["calibration text"])
    assert np.array_equal(
        quantize_embeddings(emb, precision, calibration_embeddings=calib),
        oracle_quantize(emb, precision, calibration_embeddings=calib),
    )
    ranges = np.vstack([emb.min(0) - 0.01, emb.max(0) + 0.01])
    assert np.array_equal(
        quantize_embeddings(emb, precision, ranges=ranges), oracle_quantize(emb, precision, ranges=ranges)
    )


def test_quantization_by_hand():
    # Each dimension spans 255/128, so a bucket is exactly 1/128 wide: bucket = floor((x - min) * 128).
    ranges = np.array([[0.0, -1.9921875], [1.9921875, 0.0]], dtype=np.float32)
    emb = np.array([[0.5, -1.0], [1.9921875, 0.0], [-3.0, 5.0]], dtype=np.float32)
    assert quantize_embeddings(emb, "uint8", ranges=ranges).tolist() == [[64, 127], [255, 255], [0, 255]]
    assert quantize_embeddings(emb, "int8", ranges=ranges).tolist() == [[-64, -1], [127, 127], [-128, 127]]
    assert quantize_embeddings(emb, "ubinary").tolist() == [[0b10000000], [0b10000000], [0b01000000]]
    assert quantize_embeddings(emb, "binary").tolist() == [[0], [0], [64 - 128]]


# ----------------------------------------------------------------- similarity helpers


def test_similarity_helpers_match_oracle():
    from sentence_transformers import util as oracle_util

    import embedkit.util as util

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 16)).astype(np.float32), rng.normal(size=(7, 16)).astype(np.float32)
    for name in ("cos_sim", "dot_score", "euclidean_sim", "manhattan_sim"):
        close(getattr(util, name)(a, b).numpy(), getattr(oracle_util, name)(a, b).numpy())
    for name in ("pairwise_cos_sim", "pairwise_dot_score", "pairwise_euclidean_sim", "pairwise_manhattan_sim"):
        close(getattr(util, name)(a, b[:5]).numpy(), getattr(oracle_util, name)(a, b[:5]).numpy())
    close(util.cos_sim(a[0], b).numpy(), oracle_util.cos_sim(a[0], b).numpy())  # 1-D input


@pytest.mark.parametrize("chunks", [(100, 500000), (2, 3)])
def test_semantic_search_matches_oracle(chunks):
    from sentence_transformers import util as oracle_util

    from embedkit.util import dot_score, semantic_search

    rng = np.random.default_rng(1)
    queries, corpus = rng.normal(size=(6, 8)).astype(np.float32), rng.normal(size=(40, 8)).astype(np.float32)
    for fn, oracle_fn in [(None, None), (dot_score, oracle_util.dot_score)]:
        kw = {} if fn is None else {"score_function": fn}
        okw = {} if oracle_fn is None else {"score_function": oracle_fn}
        ours = semantic_search(queries, corpus, top_k=5, query_chunk_size=chunks[0], corpus_chunk_size=chunks[1], **kw)
        theirs = oracle_util.semantic_search(torch.from_numpy(queries), torch.from_numpy(corpus), top_k=5, **okw)
        assert [[h["corpus_id"] for h in q] for q in ours] == [[h["corpus_id"] for h in q] for q in theirs]
        close([[h["score"] for h in q] for q in ours], [[h["score"] for h in q] for q in theirs])
