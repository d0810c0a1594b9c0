"""Transformer: a Hugging Face model and its tokenizer, producing token embeddings (or, for the
``fill-mask`` task of sparse encoders, the masked-LM logits of every token)."""

from __future__ import annotations

import inspect
import json
import os
from typing import Any

import torch
import transformers
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer

from .._checks import check_positive_int
from .._encoding.batching import pad_to_tensors
from .._encoding.tokenizing import TruncatingTokenizer

CONFIG_NAMES = [
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
]


BACKENDS = ("torch", "onnx")
TASKS = {"feature-extraction": AutoModel, "fill-mask": AutoModelForMaskedLM}  # sentence-transformers' names
# transformers 4.x builds the SDPA mask itself and refuses a ready-made 4-D one ("Wrong shape for input_ids")
TAKES_4D_MASK = int(transformers.__version__.split(".", 1)[0]) >= 5


class Transformer(nn.Module):
    """Runs a Hugging Face ``AutoModel`` and writes ``token_embeddings`` into the features dict.

    ``transformer_task="fill-mask"`` runs an ``AutoModelForMaskedLM`` instead and writes its logits (one
    score per vocabulary entry and token) as ``token_embeddings``, as sentence-transformers does for SPLADE.
    ``backend="onnx"`` runs it as an int8 ONNX Runtime graph on the CPU instead (``embedkit.modules.onnx_runtime``).
    """

    def __init__(
        self,
        model_name_or_path: str,
        max_seq_length: int | None = None,
        do_lower_case: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        tokenizer_name_or_path: str | None = None,
        backend: str = "torch",
        transformer_task: str = "feature-extraction",
    ):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if transformer_task not in TASKS:
            raise ValueError(f"transformer_task must be one of {sorted(TASKS)}, got {transformer_task!r}")
        if transformer_task == "fill-mask" and backend == "onnx":
            raise ValueError(  # measured on SPLADE-tiny: a quarter of the active vocabulary entries change
                "the onnx backend runs feature-extraction models only, not transformer_task='fill-mask': its int8 "
                "weights change which vocabulary entries a SPLADE model activates"
            )
        model_kwargs = dict(model_kwargs or {})
        tokenizer_kwargs = dict(tokenizer_kwargs or {})
        config_kwargs = dict(config_kwargs or {})
        # trust_remote_code only reaches transformers when the caller set it explicitly.
        for kwargs in (model_kwargs, tokenizer_kwargs, config_kwargs):
            if not kwargs.get("trust_remote_code"):
                kwargs.pop("trust_remote_code", None)
        self.source_path = model_name_or_path
        self.backend, self.transformer_task = backend, transformer_task
        self.config = AutoConfig.from_pretrained(model_name_or_path, **config_kwargs)
        auto = TASKS[transformer_task]
        self.auto_model = auto.from_pretrained(model_name_or_path, config=self.config, **model_kwargs)
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_name_or_path or model_name_or_path, **tokenizer_kwargs)
        self.do_lower_case = do_lower_case
        self.position_limit = _position_limit(self.config)
        if max_seq_length is None:
            max_seq_length = self.tokenizer.model_max_length
            if self.position_limit is not None:
                max_seq_length = min(max_seq_length, self.position_limit)
        self.max_seq_length = max_seq_length
        params = inspect.signature(self.auto_model.forward).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        self.forward_params = None if takes_any else set(params)
        self.bidirectional = not (
            getattr(self.config, "is_decoder", False)
            or getattr(self.config, "sliding_window", None)
            or any(getattr(module, "is_causal", False) for module in self.auto_model.modules())
        )
        self.runtime = None
        self._fast: TruncatingTokenizer | None = None  # built on first tokenize, for the tokenizer then in use
        self._ends: tuple[int, int] | None = None  # special tokens before and after a text (cut)
        if backend == "onnx":
            from .._optional import require

            require("onnx", "backend='onnx'")
            from .onnx_runtime import onnx_model

            self.runtime = onnx_model(self)

    @property
    def max_seq_length(self) -> int:
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        check_positive_int("max_seq_length", value)
        if self.position_limit is not None and value > self.position_limit:
            raise ValueError(
                f"max_seq_length={value} exceeds the model's position limit of {self.position_limit} tokens"
            )
        self._max_seq_length = value
        self.tokenizer.model_max_length = value

    def tokenize(self, texts: list[str]) -> dict[str, Any]:
        """Tokenize without padding, truncated to ``max_seq_length``; ``num_truncated`` counts the cut inputs,
        and ``token_type_ids`` may be None, meaning all 0.

        Fast tokenizers run through their ``tokenizers`` backend directly (all cores, no per-text Python
        work beyond reading the ids), with the shortcuts of ``embedkit._encoding.tokenizing`` where they give the same
        ids; the attention mask is left to ``pad_to_tensors``.
        """
        if self.do_lower_case:
            texts = [t.lower() for t in texts]
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None:
            return self._tokenize_slow(texts)
        side = self.tokenizer.truncation_side
        wanted = {"max_length": self.max_seq_length, "stride": 0, "strategy": "longest_first", "direction": side}
        if backend.truncation != wanted:
            backend.enable_truncation(self.max_seq_length, direction=side)
        if backend.padding is not None:
            backend.no_padding()
        fast = self._fast
        if fast is None or fast.backend is not backend or fast.stale():
            fast = self._fast = TruncatingTokenizer(backend)
        tokens = fast.encode(texts)
        features: dict[str, Any] = {"input_ids": tokens.ids}
        if "token_type_ids" in self.tokenizer.model_input_names:
            features["token_type_ids"] = tokens.type_ids
        features["num_truncated"] = tokens.truncated
        return features

    def cut(self, ids: list[int]) -> list[int]:
        """Token ids made of a text without truncation (special tokens included), cut to ``max_seq_length``
        exactly as ``tokenize`` cuts the text: the special tokens at either end stay, the text's tokens are
        cut on the tokenizer's truncation side."""
        limit = self.max_seq_length
        if len(ids) <= limit:
            return ids
        head, tail = self._special_ends()
        keep = max(limit - head - tail, 0)
        body = ids[head : len(ids) - tail]
        body = body[len(body) - keep :] if self.tokenizer.truncation_side == "left" else body[:keep]
        return ids[:head] + body + ids[len(ids) - tail :]

    def _special_ends(self) -> tuple[int, int]:
        """How many special tokens the tokenizer puts before and after a single text's tokens."""
        if self._ends is None:
            bare = self.tokenizer("a", add_special_tokens=False)["input_ids"]
            full = self.tokenizer("a", add_special_tokens=True)["input_ids"]
            head = next((i for i in range(len(full)) if full[i : i + len(bare)] == bare), 0)
            self._ends = (head, len(full) - head - len(bare))
        return self._ends

    def _tokenize_slow(self, texts: list[str]) -> dict[str, Any]:
        """Tokenizers without a ``tokenizers`` backend, through ``transformers``; truncations are not counted."""
        enc = self.tokenizer(texts, truncation="longest_first", max_length=self.max_seq_length)
        return {key: values for key, values in enc.items() if key != "attention_mask"} | {"num_truncated": 0}

    def pad_to_tensors(self, features, idx, lengths, device, pinned: bool = False) -> dict[str, Any]:
        """Rows ``idx`` of tokenized ``features`` as padded tensors (``batching.pad_to_tensors``)."""
        return pad_to_tensors(self.tokenizer, features, idx, lengths, device, pinned)

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        names = self.forward_params or {"input_ids", "attention_mask", "token_type_ids"}
        inputs = {k: v for k, v in features.items() if k in names and isinstance(v, torch.Tensor)}
        if features.get("no_padding"):
            inputs.pop("attention_mask", None)
        elif (
            "attention_mask" in inputs
            and self.runtime is None
            and self.bidirectional
            and self.auto_model.config._attn_implementation == "sdpa"
            and TAKES_4D_MASK
        ):
            # The mask SDPA would build from the 2-D one, given ready-made: transformers would otherwise
            # test the 2-D mask for padding (a host sync per batch on accelerators).
            inputs["attention_mask"] = inputs["attention_mask"].bool()[:, None, None, :]
        out = (self.runtime or self.auto_model)(**inputs, return_dict=True)
        features["token_embeddings"] = out.logits if self.transformer_task == "fill-mask" else out.last_hidden_state
        return features

    def get_word_embedding_dimension(self) -> int:
        """The width of ``token_embeddings``: the hidden size, or the vocabulary for ``fill-mask``."""
        return self.config.vocab_size if self.transformer_task == "fill-mask" else self.config.hidden_size

    def save(self, path: str) -> None:
        self.auto_model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
        config = {"max_seq_length": self.max_seq_length, "do_lower_case": self.do_lower_case}
        if self.transformer_task == "fill-mask":  # as sentence-transformers 6 writes it
            config |= {
                "transformer_task": "fill-mask",
                "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
                "module_output_name": "token_embeddings",
            }
        with open(os.path.join(path, "sentence_bert_config.json"), "w", encoding="utf8") as f:
            json.dump(config, f, indent=4)
        if self.runtime is not None:
            from .onnx_runtime import save_onnx

            save_onnx(self.runtime, path)

    @classmethod
    def load(cls, path: str, **kwargs) -> "Transformer":
        config = read_module_config(path)
        kwargs.setdefault("max_seq_length", config.get("max_seq_length"))
        kwargs.setdefault("do_lower_case", config.get("do_lower_case", False))
        kwargs.setdefault("transformer_task", config.get("transformer_task", "feature-extraction"))
        return cls(path, **kwargs)


def read_module_config(path: str) -> dict[str, Any]:
    for name in CONFIG_NAMES:
        file = os.path.join(path, name)
        if os.path.exists(file):
            with open(file, encoding="utf8") as f:
                return json.load(f)
    return {}


def _position_limit(config) -> int | None:
    limit = getattr(config, "max_position_embeddings", None)
    return limit if isinstance(limit, int) and limit > 0 else None
