"""encode() semantics and bad input, checked on tiny models and hand-computed values."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from helpers import TEXTS, cosines

from embedkit import SentenceTransformer, quantize_embeddings
from embedkit.modules import Normalize, Pooling, Transformer


@pytest.fixture(scope="module")
def model(prompt_model_dir):
    return SentenceTransformer(prompt_model_dir, device="cpu")


def test_shapes_and_order(model):
    dim = model.get_sentence_embedding_dimension()
    assert model.encode("one").shape == (dim,)
    batch = model.encode(TEXTS, batch_size=2)
    assert batch.shape == (len(TEXTS), dim) and batch.dtype == np.float32
    one_by_one = np.stack([model.encode(t) for t in TEXTS])
    np.testing.assert_allclose(batch, one_by_one, atol=1e-5)  # sorting by length never reorders results
    empty = model.encode([])
    assert empty.shape == (0, dim)
    assert model.encode([], convert_to_tensor=True).shape == (0, dim)
    assert model.encode("", convert_to_tensor=True).shape == (dim,)


def test_accepts_tuples_generators_and_arrays(model):
    ref = model.encode(TEXTS[:3])
    np.testing.assert_allclose(model.encode(tuple(TEXTS[:3])), ref, atol=1e-6)
    np.testing.assert_allclose(model.encode(t for t in TEXTS[:3]), ref, atol=1e-6)
    np.testing.assert_allclose(model.encode(np.array(TEXTS[:3])), ref, atol=1e-6)


def test_convert_options(model):
    as_list = model.encode(TEXTS[:2], convert_to_numpy=False)
    assert isinstance(as_list, list) and all(isinstance(t, torch.Tensor) for t in as_list)
    tokens = model.encode(["a b c", "a"], output_value="token_embeddings")
    assert [t.shape[0] for t in tokens] == [5, 3]  # [CLS] a b c [SEP] / [CLS] a [SEP], unpadded
    dicts = model.encode(["a b c", "a"], output_value=None)
    assert dicts[1]["input_ids"].tolist()[:3] == model.tokenizer("a")["input_ids"]
    assert dicts[0]["sentence_embedding"].shape == (32,)


@pytest.mark.parametrize(
    "bad, message",
    [
        (None, "got NoneType"),
        ([None], "index 0 is NoneType"),
        (["ok", 3], "index 1 is int"),
        (["ok", "fine", ["nested"]], "index 2 is list"),
        (b"bytes", "got bytes"),
        (["ok", b"bytes"], "index 1 is bytes"),
        (42, "got int"),
    ],
)
def test_bad_inputs_name_the_position(model, bad, message):
    with pytest.raises(TypeError, match=message):
        model.encode(bad)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"batch_size": 0}, ValueError, "batch_size must be a positive int, got 0"),
        ({"batch_size": 2.5}, ValueError, "batch_size"),
        ({"precision": "int4"}, ValueError, "Unknown precision 'int4'"),
        ({"output_value": "logits"}, ValueError, "Unknown output_value 'logits'"),
        ({"truncate_dim": 33}, ValueError, "between 1 and the embedding dimension 32, got 33"),
        ({"truncate_dim": 0}, ValueError, "truncate_dim"),
        ({"normalise": True}, ValueError, r"unknown keyword arguments: \['normalise'\]"),
        (
            {"prompt_name": "nope"},
            ValueError,
            r"Unknown prompt_name 'nope'; this model's prompts are \['document', 'passage', 'query'\]",
        ),
        ({"output_value": "token_embeddings", "precision": "int8"}, ValueError, "applies only to"),
    ],
)
def test_bad_arguments(model, kwargs, error, message):
    with pytest.raises(error, match=message):
        model.encode(["text"], **kwargs)


def test_prompt_precedence(model):
    plain = model.encode(TEXTS[:2])
    by_name = model.encode(TEXTS[:2], prompt_name="query")
    by_text = model.encode([model.prompts["query"] + t for t in TEXTS[:2]])
    np.testing.assert_allclose(by_name, by_text, atol=1e-6)
    assert not np.allclose(plain, by_name, atol=1e-3)
    np.testing.assert_allclose(model.encode(TEXTS[:2], prompt_name="query", prompt=""), plain, atol=1e-6)
    np.testing.assert_allclose(model.encode_query(TEXTS[:2]), by_name, atol=1e-6)
    np.testing.assert_allclose(
        model.encode_document(TEXTS[:2]), model.encode(TEXTS[:2], prompt_name="passage"), atol=1e-6
    )


def test_document_prompt_lookup_order(bert_dir):
    def doc_prompt(prompts):
        m = SentenceTransformer(bert_dir, device="cpu", prompts=prompts)
        expected = m.encode(
            ["x"],
            prompt=next(
                iter(v for v in [prompts.get("document"), prompts.get("passage"), prompts.get("corpus")] if v), ""
            ),
        )
        np.testing.assert_allclose(m.encode_document(["x"]), expected, atol=1e-6)
        return m

    doc_prompt({"document": "D: ", "passage": "P: ", "corpus": "C: "})
    doc_prompt({"passage": "P: ", "corpus": "C: "})
    doc_prompt({"corpus": "C: "})
    m = doc_prompt({"query": "Q: "})
    np.testing.assert_allclose(m.encode_document(["x"]), m.encode(["x"]), atol=1e-6)  # no prompt at all


def test_default_prompt_must_exist(bert_dir):
    with pytest.raises(ValueError, match="default_prompt_name 'query' is not one of the prompts"):
        SentenceTransformer(bert_dir, device="cpu", default_prompt_name="query")


def test_truncation_warns_once_with_count(model, caplog):
    texts = ["word " * 300, "short", "word " * 126, "word " * 127]  # 128 and 129 tokens with [CLS]/[SEP]
    with caplog.at_level(logging.WARNING, logger="embedkit"):
        model.encode(texts, batch_size=1)
    warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith("2 of 4 inputs were longer than max_seq_length=128")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="embedkit"):
        model.encode(["short"])
    assert not caplog.records


@pytest.mark.parametrize("side", ["right", "left"])
def test_tokenize_matches_the_transformers_tokenizer(bert_dir, side):
    """The direct ``tokenizers`` path gives what ``tokenizer(...)`` gives, padded or not, cut on either side."""
    model = SentenceTransformer(bert_dir, device="cpu")
    model.max_seq_length = 12
    tokenizer = model.tokenizer
    tokenizer.truncation_side = tokenizer.padding_side = side
    texts = [*TEXTS, "word " * 300]
    features = model.transformer.tokenize(texts)
    expected = tokenizer(texts, truncation=True, max_length=12)
    assert features["input_ids"] == expected["input_ids"]
    types = features["token_type_ids"]  # None stands for all 0, which BERT gives a single text
    assert (types is None) == (side == "right")
    assert (types or [[0] * len(ids) for ids in features["input_ids"]]) == expected["token_type_ids"]
    assert features["num_truncated"] == sum(len(tokenizer(t)["input_ids"]) > 12 for t in texts) == 3
    padded = tokenizer(texts, truncation=True, max_length=12, padding=True, return_tensors="pt")
    batch = model.tokenize(texts)
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(batch[key], padded[key]), key
    slow = model.transformer._tokenize_slow(texts)  # the path for tokenizers without a tokenizers backend
    assert slow["input_ids"] == expected["input_ids"] and slow["token_type_ids"] == expected["token_type_ids"]


def test_max_seq_length_limits(model):
    assert model.max_seq_length == 128
    with pytest.raises(ValueError, match="exceeds the model's position limit of 128"):
        model.max_seq_length = 129
    model.max_seq_length = 4
    try:
        assert model.tokenize(["one two three four five six"])["input_ids"].shape == (1, 4)
    finally:
        model.max_seq_length = 128


def test_modules_constructor_and_similarity(bert_dir):
    transformer = Transformer(bert_dir)
    m = SentenceTransformer(
        modules=[transformer, Pooling(32, "cls"), Normalize()], device="cpu", similarity_fn_name="dot"
    )
    emb = m.encode(["a", "b"])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-6)
    a, b = np.array([[1.0, 0.0], [3.0, 4.0]]), np.array([[0.0, 2.0], [3.0, 4.0]])
    assert m.similarity(a, b).tolist() == [[0.0, 3.0], [8.0, 25.0]]
    assert m.similarity_pairwise(a, b).tolist() == [0.0, 25.0]
    m.similarity_fn_name = "euclidean"
    np.testing.assert_allclose(
        m.similarity(a, b).numpy(), [[-np.sqrt(5), -np.sqrt(20)], [-np.sqrt(13), 0.0]], atol=1e-6
    )
    m.similarity_fn_name = "manhattan"
    assert m.similarity_pairwise(a, b).tolist() == [-3.0, 0.0]
    m.similarity_fn_name = "cosine"
    np.testing.assert_allclose(m.similarity(a, b).numpy(), [[0.0, 0.6], [0.8, 1.0]], atol=1e-6)
    with pytest.raises(ValueError, match="similarity_fn_name must be one of"):
        m.similarity_fn_name = "jaccard"
    with pytest.raises(ValueError, match="either model_name_or_path or modules"):
        SentenceTransformer(bert_dir, modules=[transformer])


def test_quantization_ranges_persist_and_serve_single_queries(model, tmp_path):
    corpus = model.encode(TEXTS * 3)
    query = model.encode("What is the capital of France?")
    with pytest.raises(ValueError, match="single embedding"):
        model.encode("What is the capital of France?", precision="int8")  # no ranges yet: explicit error
    model.set_quantization_ranges(calibration_embeddings=corpus)
    try:
        q8 = model.encode("What is the capital of France?", precision="int8")
        ranges = np.vstack([corpus.min(0), corpus.max(0)])
        assert np.array_equal(q8, quantize_embeddings(query[None], "int8", ranges=ranges)[0])
        assert np.array_equal(
            model.encode(TEXTS, precision="uint8"), quantize_embeddings(model.encode(TEXTS), "uint8", ranges=ranges)
        )
        model.save(str(tmp_path / "m"))
        reloaded = SentenceTransformer(str(tmp_path / "m"), device="cpu")
        np.testing.assert_array_equal(reloaded.quantization_ranges, ranges)
        assert np.array_equal(reloaded.encode("What is the capital of France?", precision="int8"), q8)
        # truncate_dim uses the leading slice of the saved ranges
        t8 = reloaded.encode(["What is the capital of France?"], precision="int8", truncate_dim=8)
        assert np.array_equal(t8, quantize_embeddings(query[None, :8], "int8", ranges=ranges[:, :8]))
    finally:
        model.set_quantization_ranges(None)
    with pytest.raises(ValueError, match=r"shape \(2, dim\)"):
        model.set_quantization_ranges(np.zeros((3, 32)))
    with pytest.raises(ValueError, match="must not exceed"):
        model.set_quantization_ranges(np.array([[1.0] * 32, [0.0] * 32]))


def test_quantize_embeddings_errors():
    with pytest.raises(ValueError, match="Unknown precision 'int4'"):
        quantize_embeddings(np.zeros((2, 4), np.float32), "int4")
    with pytest.raises(TypeError, match="must be floating point"):
        quantize_embeddings(np.zeros((2, 4), np.int8), "int8")
    with pytest.raises(ValueError, match=r"ranges must have shape \(2, 4\)"):
        quantize_embeddings(np.zeros((2, 4), np.float32), "int8", ranges=np.zeros((2, 3)))
    assert quantize_embeddings(np.zeros((0, 4), np.float32), "int8").shape == (0, 4)


def test_untrusted_dense_activation_is_refused(save_oracle, tmp_path):
    import json
    import shutil

    src = save_oracle(dense=(8, torch.nn.Tanh()))
    dst = tmp_path / "m"
    shutil.copytree(src, dst)
    cfg_file = dst / "2_Dense" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["activation_function"] = "os.system"
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="not a torch class; load with trust_remote_code=True"):
        SentenceTransformer(str(dst), device="cpu")


def test_unknown_module_type_is_refused(save_oracle, tmp_path):
    import json
    import shutil

    dst = tmp_path / "m"
    shutil.copytree(save_oracle(), dst)
    modules = json.loads((dst / "modules.json").read_text())
    modules[1]["type"] = "my_package.CustomPooling"
    (dst / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="'my_package.CustomPooling', which embedkit does not support"):
        SentenceTransformer(str(dst), device="cpu")


def test_half_precision_runs(bert_dir):
    m = SentenceTransformer(bert_dir, device="cpu", model_kwargs={"dtype": torch.bfloat16})
    assert next(m.parameters()).dtype == torch.bfloat16
    emb = m.encode(TEXTS[:3])
    ref = SentenceTransformer(bert_dir, device="cpu").encode(TEXTS[:3])
    assert emb.dtype == np.float32
    assert cosines(emb, ref).min() > 0.99


def test_legacy_and_new_pooling_configs_agree(minilm_path, tmp_path):
    import json
    import shutil

    legacy = SentenceTransformer(minilm_path, device="cpu")  # the packaged folder uses the boolean form
    assert legacy[1].pooling_mode == "mean"
    dst = tmp_path / "m"
    shutil.copytree(minilm_path, dst)
    (dst / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": 384, "pooling_mode": "mean"}))
    np.testing.assert_allclose(
        SentenceTransformer(str(dst), device="cpu").encode(TEXTS), legacy.encode(TEXTS), atol=1e-6
    )


def test_saved_settings_come_back(bert_dir, tmp_path):
    m = SentenceTransformer(
        bert_dir,
        device="cpu",
        truncate_dim=8,
        similarity_fn_name="dot",
        prompts={"query": "q: "},
        default_prompt_name="query",
    )
    m.max_seq_length = 64
    m.save(str(tmp_path / "m"))
    back = SentenceTransformer(str(tmp_path / "m"), device="cpu")
    assert back.get_sentence_embedding_dimension() == 8 and back.encode("x").shape == (8,)
    assert back.similarity_fn_name == "dot" and back.default_prompt_name == "query" and back.max_seq_length == 64
    np.testing.assert_allclose(back.encode(["x", "y"]), m.encode(["x", "y"]), atol=1e-6)
    assert SentenceTransformer(str(tmp_path / "m"), device="cpu", truncate_dim=4).encode("x").shape == (4,)


def test_a_stopped_run_of_parallel_batches_starts_no_more_of_them():
    """A Ctrl-C (or a failure) while batches run side by side: the queued ones are cancelled, so the stop
    waits for the batches already running, not for the whole run."""
    import threading

    from embedkit._encoding.batching import in_parallel

    started, release = [], threading.Event()

    def batch(i):
        started.append(i)
        if i:
            release.wait(60)
        return i

    run = in_parallel(batch, range(100), 2)  # two run, two more wait in the queue
    assert next(run) == 0
    threading.Timer(0.2, release.set).start()  # lets the two running batches finish during the stop
    run.close()
    # 0 and 1 ran; 2 ran only if the worker that 0 freed took it before the stop cancelled it (a race a
    # busy machine decides either way); 3 to 99 never start
    assert {0, 1} <= set(started) <= {0, 1, 2} and len(started) == len(set(started))
