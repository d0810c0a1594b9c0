"""The onnx backend: int8 ONNX Runtime inference owned by the Transformer module, exported once and cached
in embedkit's cache, and saved with the model."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from helpers import TEXTS, cosines

from embedkit import SentenceTransformer
from embedkit.modules import Pooling, Transformer
from embedkit.modules.onnx_runtime import SAVED, cache_folder

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture
def model_copy(prompt_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDKIT_HOME", str(tmp_path / "home"))
    path = tmp_path / "model"
    shutil.copytree(prompt_model_dir, path)
    return str(path)


@pytest.mark.slow
def test_onnx_int8_close_to_torch_and_cached(model_copy):
    onnx = SentenceTransformer(model_copy, backend="onnx")
    torch_model = SentenceTransformer(model_copy, device="cpu")
    exported = os.path.join(cache_folder(model_copy), "model_qint8.onnx")
    assert os.path.exists(exported) and not os.path.exists(os.path.join(model_copy, "onnx"))  # not the model's folder
    got, expected = onnx.encode(TEXTS), torch_model.encode(TEXTS)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert cosines(got, expected).min() > 0.98
    assert not np.allclose(got, expected, atol=1e-6)  # really the int8 graph, not the torch model
    np.testing.assert_allclose(onnx.encode_query(TEXTS), onnx.encode(TEXTS, prompt_name="query"), atol=1e-6)
    stamp = os.path.getmtime(exported)
    SentenceTransformer(model_copy, backend="onnx")  # the second load reuses the file
    assert os.path.getmtime(exported) == stamp
    weights = os.path.join(model_copy, "model.safetensors")
    os.utime(weights, (stamp + 100, stamp + 100))  # new weights: a new export
    SentenceTransformer(model_copy, backend="onnx")
    assert os.path.getmtime(exported) != stamp
    stamp_file = os.path.join(cache_folder(model_copy), "embedkit_onnx.json")
    with open(stamp_file) as f:
        recorded = json.load(f)
    with open(stamp_file, "w") as f:
        json.dump({**recorded, "export_version": recorded["export_version"] - 1}, f)
    stamp = os.path.getmtime(exported)
    SentenceTransformer(model_copy, backend="onnx")  # a file from an older export: a new export
    assert os.path.getmtime(exported) != stamp


def test_onnx_runs_rows_unpadded_without_a_mask(model_copy):
    """The fused graph has no attention mask: rows are grouped by length and never padded, so left and
    right padding run the same int8 graphs on the same tokens (only torch's pooling sums in another order),
    and rows match their own single-text encodings."""
    import onnx

    model = SentenceTransformer(model_copy, backend="onnx")
    runtime = model.transformer.runtime
    assert "attention_mask" not in runtime.input_names
    assert "MultiHeadAttention" in {node.op_type for node in onnx.load(runtime.path).graph.node}
    texts = [t for t in TEXTS if t] * 3
    right = model.encode(texts, batch_size=len(texts))
    model.tokenizer.padding_side = "left"
    left = model.encode(texts, batch_size=len(texts))
    np.testing.assert_allclose(left, right, atol=1e-6)
    alone = np.stack([model.encode([t])[0] for t in texts])
    assert cosines(right, alone).min() > 0.999  # activations are quantized per run, so not bit-identical


@pytest.mark.slow
def test_minilm_int8_quality(minilm_path, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDKIT_HOME", str(tmp_path))
    onnx = SentenceTransformer(minilm_path, backend="onnx")
    fp32 = SentenceTransformer(minilm_path, device="cpu")
    similarity = cosines(onnx.encode(TEXTS), fp32.encode(TEXTS))
    assert similarity.mean() > 0.98 and similarity.min() > 0.95  # the empty string is the worst case


def test_exports_go_to_embedkits_cache_not_the_model_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDKIT_HOME", str(tmp_path / "home"))
    folder = cache_folder(str(tmp_path / "model"))
    assert folder.startswith(os.path.join(str(tmp_path / "home"), "onnx") + os.sep)
    assert cache_folder(str(tmp_path / "other")) != folder
    monkeypatch.delenv("EMBEDKIT_HOME")
    assert cache_folder(str(tmp_path / "model")).startswith(os.path.expanduser("~/.cache/embedkit/onnx/"))


def test_an_export_leaves_the_callers_logging_as_it_was(model_copy):
    import logging

    logging.disable(logging.DEBUG)  # the caller's own switch, which an export must not reset
    try:
        SentenceTransformer(model_copy, backend="onnx")
        assert logging.root.manager.disable == logging.DEBUG
        assert not logging.getLogger().filters
    finally:
        logging.disable(logging.NOTSET)


def test_onnx_backend_arguments(model_copy):
    with pytest.raises(ValueError, match="the onnx backend runs on the CPU"):
        SentenceTransformer(model_copy, backend="onnx", device="cuda")
    with pytest.raises(ValueError, match=r"backend must be one of \('torch', 'onnx'\)"):
        SentenceTransformer(model_copy, backend="openvino")


def test_the_transformer_module_owns_the_runtime(model_copy):
    module = Transformer(model_copy, backend="onnx")
    assert module.backend == "onnx" and module.runtime.path.startswith(cache_folder(model_copy))
    model = SentenceTransformer(modules=[module, Pooling(module.get_word_embedding_dimension())], backend="onnx")
    assert model.backend == "onnx" and model.device.type == "cpu"
    whole = SentenceTransformer(model_copy, backend="onnx")  # the folder adds Normalize
    assert cosines(model.encode(TEXTS[1:]), whole.encode(TEXTS[1:])).min() > 0.99999
    with pytest.raises(ValueError, match=r"backend='torch' but the Transformer module was built with backend='onnx'"):
        SentenceTransformer(modules=[module, Pooling(module.get_word_embedding_dimension())])
    with pytest.raises(ValueError, match=r"backend must be one of \('torch', 'onnx'\), got 'tensorrt'"):
        Transformer(model_copy, backend="tensorrt")


@pytest.mark.slow
def test_a_saved_onnx_model_carries_its_graph(model_copy, tmp_path):
    """Saving writes the graph beside the weights; loading that folder runs it without a new export; the
    folder still loads in sentence-transformers with the torch weights; new weights make it stale."""
    from sentence_transformers import SentenceTransformer as Reference

    model = SentenceTransformer(model_copy, backend="onnx")
    saved = str(tmp_path / "saved")
    model.save(saved)
    assert os.path.exists(os.path.join(saved, SAVED))
    again = SentenceTransformer(saved, backend="onnx")
    assert again.transformer.runtime.path == os.path.join(saved, SAVED)
    assert not os.path.exists(cache_folder(saved))  # nothing exported for the saved folder
    np.testing.assert_array_equal(again.encode(TEXTS), model.encode(TEXTS))  # the very same graph
    reference = Reference(saved, device="cpu").encode(TEXTS)
    np.testing.assert_allclose(SentenceTransformer(model_copy, device="cpu").encode(TEXTS), reference, atol=1e-5)
    weights = os.path.join(saved, "model.safetensors")
    os.utime(weights, (os.path.getmtime(weights) + 100,) * 2)  # the weights changed after the save
    stale = SentenceTransformer(saved, backend="onnx")
    assert stale.transformer.runtime.path.startswith(cache_folder(saved))
