"""SpladePooling: masked-LM logits of every token pooled into one sparse vector over the vocabulary."""

from __future__ import annotations

import json
import os

import torch
from torch import nn

STRATEGIES = ("max", "sum")
ACTIVATIONS = ("relu", "log1p_relu")


class SpladePooling(nn.Module):
    """SPLADE's pooling, as sentence-transformers defines it: ``log(1 + relu(logits))`` of each token
    (``log1p_relu`` takes ``log1p`` once more), padding masked out, then the ``max`` (SPLADE v2 and later)
    or ``sum`` over the tokens. Most of the vocabulary comes out exactly 0."""

    def __init__(
        self,
        pooling_strategy: str = "max",
        activation_function: str = "relu",
        embedding_dimension: int | None = None,
        chunk_size: int | None = None,
    ):
        super().__init__()
        if pooling_strategy not in STRATEGIES:
            raise ValueError(f"pooling_strategy must be one of {STRATEGIES}, got {pooling_strategy!r}")
        if activation_function not in ACTIVATIONS:
            raise ValueError(f"activation_function must be one of {ACTIVATIONS}, got {activation_function!r}")
        self.pooling_strategy = pooling_strategy
        self.activation_function = activation_function
        self.embedding_dimension = embedding_dimension
        self.chunk_size = chunk_size  # tokens pooled at a time (less memory for long inputs)

    def forward(self, features: dict) -> dict:
        """``max`` takes the largest logit of each entry first and transforms only that: the transform is
        non-decreasing, so the result is the same number, for one vocabulary row instead of one per token.
        In inference the logits are masked in place (they are this batch's own and not read again)."""
        logits = features["token_embeddings"]
        mask = features["attention_mask"].unsqueeze(-1).to(logits.dtype)
        batch, length, vocabulary = logits.shape
        step = self.chunk_size if self.chunk_size and self.chunk_size > 0 else max(length, 1)
        pooled = torch.zeros((batch, vocabulary), dtype=logits.dtype, device=logits.device)
        for start in range(0, length, step):
            chunk, chunk_mask = logits[:, start : start + step], mask[:, start : start + step]
            masked = chunk.mul_(chunk_mask) if torch.is_inference_mode_enabled() else chunk * chunk_mask
            if self.pooling_strategy == "max":  # masked tokens count as 0, which relu gives anyway
                pooled = torch.maximum(pooled, masked.amax(dim=1))
            else:
                pooled += self._activate(masked.relu()).sum(dim=1)
        if self.pooling_strategy == "max":
            pooled = self._activate(pooled.relu())
        self.embedding_dimension = vocabulary
        features["sentence_embedding"] = pooled
        return features

    def _activate(self, positive: torch.Tensor) -> torch.Tensor:
        """log(1 + x), twice for ``log1p_relu``."""
        out = positive.log1p()
        return out.log1p() if self.activation_function == "log1p_relu" else out

    def get_sentence_embedding_dimension(self) -> int | None:
        return self.embedding_dimension

    def get_config_dict(self) -> dict:
        return {
            "pooling_strategy": self.pooling_strategy,
            "activation_function": self.activation_function,
            "embedding_dimension": self.embedding_dimension,
        }

    def save(self, path: str) -> None:
        with open(os.path.join(path, "config.json"), "w", encoding="utf8") as f:
            json.dump(self.get_config_dict(), f, indent=2)

    @classmethod
    def load(cls, path: str) -> "SpladePooling":
        file = os.path.join(path, "config.json")
        config = {}
        if os.path.exists(file):
            with open(file, encoding="utf8") as f:
                config = json.load(f)
        if "word_embedding_dimension" in config:  # the name sentence-transformers 5 wrote
            config["embedding_dimension"] = config.pop("word_embedding_dimension")
        known = ("pooling_strategy", "activation_function", "embedding_dimension", "chunk_size")
        return cls(**{k: v for k, v in config.items() if k in known})

    def __repr__(self) -> str:
        return f"SpladePooling({self.get_config_dict()})"
