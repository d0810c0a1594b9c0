"""The ``onnx`` backend: the Transformer runs in ONNX Runtime on CPU, with int8 weights.

``Transformer(path, backend="onnx")`` owns the runtime (``transformer.runtime``). The Hugging Face model is
exported once with ``torch.onnx.export``, fused by ONNX Runtime's transformer optimizer, its MatMul and
Attention weights quantized to int8 per channel with ONNX Runtime's dynamic quantization, and the result
cached in embedkit's own cache (``$EMBEDKIT_HOME/onnx/``, by default ``~/.cache/embedkit/onnx/``), never
written into the folder it was loaded from. Saving the model writes the graph into the saved folder
(``onnx/embedkit_qint8.onnx``), where a later load with this backend finds it, as long as the weights
beside it are the ones it was exported from. Pooling, Dense and Normalize stay in torch. Needs the
``onnx`` extra.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from ..hub import embedkit_home

logger = logging.getLogger(__name__)

FILE = "model_qint8.onnx"
SAVED = os.path.join("onnx", "embedkit_qint8.onnx")  # in a saved model folder
STAMP = "embedkit_onnx.json"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
EXPORT_VERSION = 2  # bump when the export changes, so cached files are rebuilt
# ONNX Runtime's session-level SkipLayerNormalization fusion runs about 5x slower on CPU than the
# Add + LayerNormalization it replaces (measured with ORT 1.32), so it stays off.
SLOW_FUSIONS = ["SkipLayerNormFusion"]
MASK_INPUT = 4  # MultiHeadAttention's key_padding_mask


class OnnxModel:
    """Callable like the Hugging Face model it replaces: ``model(**inputs).last_hidden_state``.

    Rows of equal length run together without padding, so the exported graph needs no attention mask
    and ONNX Runtime's MultiHeadAttention takes its flash-attention kernel. Each run holds at most
    ``TOKENS_PER_RUN`` tokens, which keeps the int8 GEMMs in cache, and uses as many ONNX Runtime
    threads as torch currently allows (so batches that embedkit runs side by side each get one).
    """

    TOKENS_PER_RUN = 2048

    def __init__(self, path: str):
        self.path = path
        self._sessions: dict[int, object] = {}
        self._lock = threading.Lock()
        session = self._session(1)
        self.input_names = [i.name for i in session.get_inputs()]
        output = session.get_outputs()[0]
        self.output_name, self.hidden_size = output.name, output.shape[-1]
        self.per_token = len(output.shape) == 3  # hidden states per token; else one row per text (logits)

    def _session(self, threads: int):
        with self._lock:
            if threads not in self._sessions:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                self._sessions[threads] = ort.InferenceSession(
                    self.path, options, providers=["CPUExecutionProvider"], disabled_optimizers=SLOW_FUSIONS
                )
            return self._sessions[threads]

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, **_ignored):
        ids = input_ids.cpu().numpy()
        mask = np.ones_like(ids) if attention_mask is None else attention_mask.cpu().numpy()
        types = np.zeros_like(ids) if token_type_ids is None else token_type_ids.cpu().numpy()
        session = self._session(torch.get_num_threads())
        lengths, starts = mask.sum(1), mask.argmax(1)  # each row's tokens are one run, left or right padded
        out = np.zeros((*(ids.shape if self.per_token else ids.shape[:1]), self.hidden_size), dtype=np.float32)
        for start, length in sorted(set(zip(starts.tolist(), lengths.tolist()))):
            if length == 0:
                continue
            same = np.flatnonzero((starts == start) & (lengths == length))
            cols = slice(start, start + length)
            for part in np.array_split(same, -(-len(same) * length // self.TOKENS_PER_RUN)):
                given = {"input_ids": ids[part, cols], "token_type_ids": types[part, cols]}
                given["attention_mask"] = np.ones_like(given["input_ids"])
                found = session.run(None, {name: given[name] for name in self.input_names})[0]
                if self.per_token:
                    out[part, cols] = found
                else:
                    out[part] = found
        return SimpleNamespace(**{self.output_name: torch.from_numpy(out)})


class _Export(nn.Module):
    """Positional inputs to the keyword call the exporter needs; returns the ``output`` the model gives."""

    def __init__(self, model: nn.Module, names: list[str], output: str):
        super().__init__()
        self.model, self.names, self.output = model, names, output

    def forward(self, *tensors):
        return getattr(self.model(**dict(zip(self.names, tensors)), return_dict=True), self.output)


OUTPUTS = {"feature-extraction": "last_hidden_state", "sequence-classification": "logits"}


def onnx_model(owner, task: str = "feature-extraction") -> OnnxModel:
    """The int8 ONNX model for ``owner`` (a Transformer module, or a CrossEncoder for
    ``task="sequence-classification"``): the one saved in its folder, else the cached one, exported and
    quantized on first use."""
    source = owner.source_path
    stamp = _fingerprint(source)
    saved = os.path.join(source, SAVED)
    if os.path.exists(saved) and _read(os.path.join(os.path.dirname(saved), STAMP)) == stamp:
        return OnnxModel(saved)
    folder = cache_folder(source, task)
    path = os.path.join(folder, FILE)
    if not (os.path.exists(path) and _read(os.path.join(folder, STAMP)) == stamp):
        logger.info("Exporting %s to ONNX with int8 weights into %s", source, folder)
        export_int8(owner, path, OUTPUTS[task])
        _write(os.path.join(folder, STAMP), stamp)
    return OnnxModel(path)


def save_onnx(runtime: OnnxModel, folder: str) -> None:
    """Copy ``runtime``'s graph into the model ``folder`` just saved, stamped with the weights saved there."""
    target = os.path.join(folder, SAVED)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.realpath(runtime.path) != os.path.realpath(target):
        shutil.copyfile(runtime.path, target)
    _write(os.path.join(os.path.dirname(target), STAMP), _fingerprint(folder))


def export_int8(owner, path: str, output: str = "last_hidden_state") -> None:
    """Export, fuse and quantize. The graph is traced with eager attention so that ONNX Runtime's
    transformer optimizer recognises and fuses it (see ``_optimize``); the MatMul weights are then
    quantized to int8, per channel."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = getattr(owner, "auto_model", None) or owner.model
    params = getattr(owner, "forward_params", None) or set(inspect.signature(model.forward).parameters)
    names = [n for n in INPUTS if n in params or n != "token_type_ids"]
    example = tuple(
        torch.zeros(2, 8, dtype=torch.long) if n == "token_type_ids" else torch.ones(2, 8, dtype=torch.long)
        for n in names
    )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    attention = model.config._attn_implementation
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp32 = os.path.join(tmp, "model.onnx")
        model.to("cpu", torch.float32).eval()
        model.set_attn_implementation("eager")
        try:
            torch.onnx.export(
                _Export(model, names, output),
                example,
                fp32,
                input_names=names,
                output_names=[output],
                dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, output: _axes(output)},
                opset_version=17,
                dynamo=False,
            )
        finally:
            model.set_attn_implementation(attention)
            model.to(device, dtype)
        graph = _optimize(fp32, model.config, os.path.join(tmp, "fused.onnx"))
        partial = path + ".partial"
        root = logging.getLogger()
        hint = _RootHint()  # quantize_dynamic logs a generic pre-processing hint through the root logger itself
        root.addFilter(hint)
        try:
            quantize_dynamic(
                graph,
                partial,
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        finally:
            root.removeFilter(hint)
        os.replace(partial, path)


def _optimize(source: str, config, target: str) -> str:
    """ONNX Runtime's operator fusion for encoder models; the plain graph if it does not apply.

    Attention becomes MultiHeadAttention without its key padding mask (OnnxModel never feeds padding),
    which is the form that runs ONNX Runtime's CPU flash attention. SkipLayerNormalization and BiasGelu
    stay unfused: on CPU they are slower than the plain ops.
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.use_multi_head_attention = True
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = options.enable_bias_gelu = False
    try:
        heads, hidden = config.num_attention_heads, config.hidden_size
        fused = optimize_model(
            source, model_type="bert", num_heads=heads, hidden_size=hidden, optimization_options=options
        )
        for node in fused.get_nodes_by_op_type("MultiHeadAttention"):
            if len(node.input) > MASK_INPUT:
                node.input[MASK_INPUT] = ""
            while node.input and not node.input[-1]:
                node.input.pop()
        fused.prune_graph()
        fused.save_model_to_file(target)
        return target
    except Exception as exc:  # noqa: BLE001 - an unfused graph still runs, only slower
        logger.warning("ONNX Runtime could not fuse this model (%s); quantizing the plain graph", exc)
        return source


def cache_folder(source: str, task: str = "feature-extraction") -> str:
    """embedkit's own cache, never the model's folder (which may belong to another package or the HF
    cache): ``$EMBEDKIT_HOME/onnx/<hash of the model path (and task)>``, by default under ~/.cache/embedkit."""
    key = os.path.realpath(source) + ("" if task == "feature-extraction" else f"\0{task}")
    return os.path.join(embedkit_home(), "onnx", hashlib.sha1(key.encode()).hexdigest()[:16])


def _axes(output: str) -> dict[int, str]:
    return {0: "batch", 1: "sequence"} if output == "last_hidden_state" else {0: "batch"}


def _fingerprint(source: str) -> dict:
    """Weights files with their sizes and times, and the export version: a change means a new export."""
    files = sorted(f for f in os.listdir(source) if f.endswith((".safetensors", ".bin")))
    stamp = {
        f: [os.path.getsize(os.path.join(source, f)), int(os.path.getmtime(os.path.join(source, f)))] for f in files
    }
    return {"export_version": EXPORT_VERSION, **stamp}


def _write(file: str, stamp: dict) -> None:
    with open(file, "w") as f:
        json.dump(stamp, f)


def _read(file: str):
    try:
        with open(file) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class _RootHint(logging.Filter):
    """Drops warnings logged through the root logger itself (``logging.warning(...)``); records of named
    loggers pass the root by propagation, which logger filters do not see, so the user's logging is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING
