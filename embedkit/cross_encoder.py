"""CrossEncoder: scores (query, passage) pairs with a sequence-classification model, as
``sentence_transformers.CrossEncoder`` does (``predict``, ``rank``), and reads and writes its folders.

A folder is a Hugging Face ``*ForSequenceClassification`` model with its tokenizer, plus what
sentence-transformers 6 writes beside it (``modules.json``, ``sentence_bert_config.json``,
``config_sentence_transformers.json`` with the activation); plain Hugging Face folders (the Hub's
``cross-encoder/*`` models) load too. The activation is the one given, else the one saved (only
``torch.*`` classes unless ``trust_remote_code``), else sigmoid for one label and identity for several.

Speed, as for the encoder: pairs are tokenized only as far as truncation keeps (``_encoding.pairs``),
sorted by length, batched without padding where lengths allow (then without an attention mask), run side
by side on CPU cores, in fp16 on CUDA unless a dtype is given; ``backend="onnx"`` runs int8 on the CPU.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from ._checks import check_positive_int
from ._encoding.batching import in_parallel, pad_to_tensors, to_numpy, token_batches, token_lengths
from ._encoding.pairs import PairTokenizer
from ._version import __version__
from .hub import resolve_model_path
from .model import default_device
from .model_folder import MODEL_CONFIG, read_json, write_json

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx")
SAVED_TRANSFORMER = "sentence_transformers.base.modules.transformer.Transformer"
MODULE_CONFIG = {
    "transformer_task": "sequence-classification",
    "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
    "module_output_name": "scores",
}


class CrossEncoder(nn.Module):
    """Scores text pairs; ``CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2").rank(query, passages)``.

    - ``num_labels``: the classification head's size (a new head if it differs from the saved one).
    - ``max_length``: tokens per pair (default: the tokenizer's limit, capped by the model's positions).
    - ``activation_fn``: applied to the logits (default: see the module docstring).
    - ``device``, ``cache_folder``, ``revision``, ``token``, ``local_files_only``, ``trust_remote_code``,
      ``model_kwargs``, ``tokenizer_kwargs``, ``config_kwargs``: as for ``SentenceTransformer``; a bare
      name is tried as ``cross-encoder/<name>`` first.
    - ``backend``: ``"torch"`` or ``"onnx"`` (int8 on the CPU; the ``onnx`` extra).
    """

    def __init__(
        self,
        model_name_or_path: str,
        num_labels: int | None = None,
        max_length: int | None = None,
        activation_fn: Callable | None = None,
        device: str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        token: bool | str | None = None,
        trust_remote_code: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        backend: str = "torch",
        local_files_only: bool = False,
        tokenizer_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "onnx" and device not in (None, "cpu"):
            raise ValueError(f"the onnx backend runs on the CPU; got device={device!r}")
        path = resolve_model_path(
            model_name_or_path, cache_folder, revision, token, local_files_only, prefix="cross-encoder"
        )
        extra = {"trust_remote_code": True} if trust_remote_code else {}
        config_kwargs = {**(config_kwargs or {}), **extra}
        if num_labels is not None:
            check_positive_int("num_labels", num_labels)
            config_kwargs["num_labels"] = num_labels
        self.config = AutoConfig.from_pretrained(path, **config_kwargs)
        _check_head(path, self.config, num_labels)
        model_kwargs = {**(model_kwargs or {}), **extra}
        target = "cpu" if backend == "onnx" else device or default_device()
        if str(target).startswith("cuda"):
            model_kwargs.setdefault("dtype", torch.float16)  # scores are upcast to float32 after the head
        self.model = AutoModelForSequenceClassification.from_pretrained(path, config=self.config, **model_kwargs)
        self.tokenizer = AutoTokenizer.from_pretrained(path, **{**(tokenizer_kwargs or {}), **extra})
        self.model_name = model_name_or_path
        self.trust_remote_code, self.backend, self.source_path = trust_remote_code, backend, path
        self._pairs: PairTokenizer | None = None
        limit = getattr(self.config, "max_position_embeddings", None)
        if max_length is None:
            max_length = self.tokenizer.model_max_length
            if isinstance(limit, int) and max_length > limit:
                max_length = limit
        check_positive_int("max_length", max_length)
        self.max_length = max_length
        self.activation_fn = activation_fn or self._saved_activation(path) or self.default_activation_fn()
        self.parallel_batches = True  # CPU batches side by side, one torch thread each
        self.runtime = None
        if backend == "onnx":
            from ._optional import require

            require("onnx", "CrossEncoder(backend='onnx')")
            from .modules.onnx_runtime import onnx_model

            self.runtime = onnx_model(self, task="sequence-classification")
        self.to(target)

    # ----------------------------------------------------------------- properties
    @property
    def num_labels(self) -> int:
        return self.config.num_labels

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def max_seq_length(self) -> int:
        return self.max_length

    def default_activation_fn(self) -> nn.Module:
        """Sigmoid for one label (a relevance score in [0, 1]), identity for several (logits)."""
        return nn.Sigmoid() if self.num_labels == 1 else nn.Identity()

    def _saved_activation(self, path: str) -> nn.Module | None:
        saved = (read_json(os.path.join(path, MODEL_CONFIG)) or {}).get("activation_fn")
        saved = saved or (getattr(self.config, "sentence_transformers", None) or {}).get("activation_fn")
        saved = saved or getattr(self.config, "sbert_ce_default_activation_function", None)
        if not saved:
            return None
        if not (self.trust_remote_code or saved.startswith("torch.")):
            logger.warning(
                "%s names the activation %r, which is not a torch class: using the default (pass "
                "trust_remote_code=True to load it)",
                path,
                saved,
            )
            return None
        module, _, name = saved.rpartition(".")
        return getattr(importlib.import_module(module), name)()

    # ----------------------------------------------------------------- scoring
    def predict(
        self,
        sentences=None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Callable | None = None,
        apply_softmax: bool = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        **kwargs,
    ):
        """Scores of ``(query, passage)`` pairs: one pair gives a scalar (a 1-D array for several labels), a
        list of pairs one row each, in order. ``activation_fn`` replaces the model's for this call;
        ``apply_softmax`` turns several labels' scores into probabilities."""
        if "inputs" in kwargs and sentences is None:  # the sentence-transformers 6 name
            sentences = kwargs.pop("inputs")
        if kwargs:
            raise ValueError(f"predict() got unknown keyword arguments: {sorted(kwargs)}")
        check_positive_int("batch_size", batch_size)
        single, pairs = check_pairs(sentences)
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
        scores = self._scores(pairs, batch_size, show_progress_bar)
        scores = (activation_fn or self.activation_fn)(scores)
        if self.num_labels == 1 and scores.ndim > 1:
            scores = scores.squeeze(-1)
        if apply_softmax and scores.ndim > 1:
            scores = torch.nn.functional.softmax(scores, dim=1)
        if convert_to_tensor:
            result = scores
        elif convert_to_numpy:
            result = to_numpy(scores)
        else:
            result = list(scores)
        return result[0] if single else result

    def rank(
        self,
        query: str,
        documents: list[str],
        top_k: int | None = None,
        return_documents: bool = False,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Callable | None = None,
    ) -> list[dict[str, Any]]:
        """``documents`` by their score against ``query``, best first: ``[{"corpus_id", "score", "text"?}]``
        (the ``top_k`` best, or all)."""
        if self.num_labels != 1:
            raise ValueError(
                f"rank() needs a model with one label; this one has {self.num_labels} (use predict() on pairs)"
            )
        if not isinstance(query, str):
            raise TypeError(f"rank() query must be a str, got {type(query).__name__}")
        if documents is None or isinstance(documents, str):
            raise TypeError("rank() documents must be a list of str")
        if top_k is not None:
            check_positive_int("top_k", top_k)
        pairs = [(query, doc) for doc in documents]
        scores = (
            self.predict(pairs, batch_size, show_progress_bar, activation_fn, convert_to_numpy=True) if pairs else []
        )
        order = sorted(range(len(pairs)), key=lambda i: -float(scores[i]))
        results = [{"corpus_id": i, "score": float(scores[i])} for i in order]
        if return_documents:
            for result in results:
                result["text"] = documents[result["corpus_id"]]
        return results[:top_k]

    @torch.inference_mode()
    def _scores(self, pairs: list[tuple[str, str]], batch_size: int, progress: bool) -> torch.Tensor:
        """Logits (float32, [n, num_labels]) in input order."""
        self.eval()
        if not pairs:
            return torch.zeros(0, self.num_labels)
        features = self.tokenize(pairs)
        lengths = token_lengths(features)
        workers = torch.get_num_threads() if self.device.type == "cpu" and self.parallel_batches else 1
        workers = min(workers, len(pairs))
        if workers > 1:
            batch_size = min(batch_size, -(-len(pairs) // workers))

        def forward(idx):
            batch = pad_to_tensors(self.tokenizer, features, idx, lengths, self.device)
            inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            if batch["no_padding"]:
                inputs.pop("attention_mask")
            with torch.inference_mode():  # a worker thread does not inherit the caller's mode
                return idx, (self.runtime or self.model)(**inputs, return_dict=True).logits.float()

        from tqdm.auto import tqdm

        out = torch.empty(len(pairs), self.num_labels)
        with tqdm(total=len(pairs), desc="Scoring", unit="pair", disable=not progress) as bar:
            for idx, logits in in_parallel(forward, token_batches(lengths, batch_size, None), workers):
                out[torch.from_numpy(idx)] = logits.cpu()
                bar.update(len(idx))
        return out

    def tokenize(self, pairs: list[tuple[str, str]]) -> dict[str, Any]:
        """Unpadded model inputs of ``pairs``, truncated to ``max_length`` (token_type_ids None: all 0)."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None:
            enc = self.tokenizer(
                [a for a, _ in pairs], [b for _, b in pairs], truncation=True, max_length=self.max_length
            )
            return {k: v for k, v in enc.items() if k in ("input_ids", "token_type_ids")}
        if self._pairs is None or self._pairs.max_length != self.max_length or self._pairs.stale(backend):
            self._pairs = PairTokenizer(backend, self.max_length)
        tokens = self._pairs.encode(pairs)
        features: dict[str, Any] = {"input_ids": tokens.ids}
        if "token_type_ids" in self.tokenizer.model_input_names:
            features["token_type_ids"] = tokens.type_ids
        return features

    # ----------------------------------------------------------------- folders
    def save(self, path: str, **_ignored) -> None:
        """Write a folder that this class and sentence-transformers' CrossEncoder both load."""
        os.makedirs(path, exist_ok=True)
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.model_max_length = self.max_length
        self.tokenizer.save_pretrained(path)
        activation = type(self.activation_fn)
        config = {
            "__version__": {"embedkit": __version__, "pytorch": torch.__version__},
            "activation_fn": f"{activation.__module__}.{activation.__qualname__}",
            "model_type": "CrossEncoder",
            "prompts": {},
            "default_prompt_name": None,
        }
        write_json(os.path.join(path, MODEL_CONFIG), config)
        write_json(os.path.join(path, "modules.json"), [{"idx": 0, "name": "0", "path": "", "type": SAVED_TRANSFORMER}])
        write_json(os.path.join(path, "sentence_bert_config.json"), MODULE_CONFIG)
        if self.runtime is not None:
            from .modules.onnx_runtime import save_onnx

            save_onnx(self.runtime, path)

    save_pretrained = save

    def __repr__(self) -> str:
        return f"CrossEncoder({self.model_name!r}, num_labels={self.num_labels}, max_length={self.max_length})"


def check_pairs(sentences) -> tuple[bool, list[tuple[str, str]]]:
    """(whether one pair was given, the pairs), or a TypeError naming the first bad one."""
    if sentences is None or isinstance(sentences, (str, bytes, dict)):
        raise TypeError(f"predict() expects a (query, passage) pair or a list of them, got {type(sentences).__name__}")
    if isinstance(sentences, np.ndarray):
        sentences = sentences.tolist()
    sentences = list(sentences)
    single = bool(sentences) and not isinstance(sentences[0], (list, tuple))
    pairs = [sentences] if single else sentences
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(t, str) for t in pair):
            raise TypeError(f"predict() pair at index {i} must be two str, got {pair!r:.80}")
    return single, [tuple(pair) for pair in pairs]


def _check_head(path: str, config, num_labels: int | None) -> None:
    """Refuse a folder without a classification head (an embedding model, a causal LM) unless a new head of
    ``num_labels`` is asked for."""
    architectures = getattr(config, "architectures", None) or []
    if num_labels is None and architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ValueError(
            f"{path} holds a {architectures[0]}, which has no classification head: a CrossEncoder needs a "
            "*ForSequenceClassification model (such as cross-encoder/ms-marco-MiniLM-L6-v2), or num_labels= "
            "to start a new head for training"
        )
