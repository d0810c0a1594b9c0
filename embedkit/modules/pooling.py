"""Pooling: token embeddings to one sentence embedding."""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch import nn

MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# Legacy boolean keys of 1_Pooling/config.json, in the order their outputs are concatenated.
LEGACY_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


class Pooling(nn.Module):
    """Pools ``token_embeddings`` into ``sentence_embedding``; several modes are concatenated in order."""

    def __init__(
        self, embedding_dimension: int, pooling_mode: str | tuple | list = "mean", include_prompt: bool = True
    ):
        super().__init__()
        modes = (pooling_mode,) if isinstance(pooling_mode, str) else tuple(pooling_mode)
        if not modes:
            raise ValueError("pooling_mode must name at least one mode")
        for mode in modes:
            if mode not in MODES:
                raise ValueError(f"Unknown pooling mode {mode!r}; valid modes are {MODES}")
        self.embedding_dimension = embedding_dimension
        self.modes = modes
        self.include_prompt = include_prompt

    @property
    def pooling_mode(self) -> str | tuple[str, ...]:
        return self.modes[0] if len(self.modes) == 1 else self.modes

    def get_sentence_embedding_dimension(self) -> int:
        return len(self.modes) * self.embedding_dimension

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        tokens = features["token_embeddings"]
        full_mask = features["attention_mask"]
        mask = full_mask
        prompt_length = features.get("prompt_length")
        if not self.include_prompt and prompt_length:
            mask = _exclude_prompt(full_mask, prompt_length)
        acc = torch.float32 if tokens.dtype in (torch.float16, torch.bfloat16) else tokens.dtype
        outputs = [self._pool(mode, tokens, mask, full_mask, acc) for mode in self.modes]
        features["sentence_embedding"] = torch.cat(outputs, dim=-1)
        return features

    @staticmethod
    def _pool(mode: str, tokens, mask, full_mask, acc):
        if mode == "cls":
            first = mask.to(torch.int).argmax(dim=1)
            return tokens[torch.arange(tokens.shape[0], device=tokens.device), first]
        if mode == "max":
            m = mask.unsqueeze(-1).expand_as(tokens).to(tokens.dtype)
            return tokens.masked_fill(m == 0, float("-inf")).max(dim=1).values
        if mode in ("mean", "mean_sqrt_len_tokens"):
            m = mask.unsqueeze(-1).to(tokens.dtype)
            total = (tokens * m).sum(dim=1, dtype=acc)
            count = torch.clamp(m.sum(dim=1, dtype=acc), min=1e-9)
            return (total / (count if mode == "mean" else torch.sqrt(count))).to(tokens.dtype)
        if mode == "weightedmean":
            m = mask.unsqueeze(-1).to(acc)
            weights = torch.arange(1, tokens.shape[1] + 1, device=tokens.device, dtype=acc).view(1, -1, 1)
            weights = weights - full_mask.to(torch.int32).argmax(dim=1).view(-1, 1, 1)  # start after left padding
            weighted = m * weights
            return ((tokens * weighted).sum(dim=1) / torch.clamp(weighted.sum(dim=1), min=1e-9)).to(tokens.dtype)
        # lasttoken: the last position the mask keeps, whichever side the padding is on.
        seq_len = mask.shape[1]
        values, idx = mask.flip(1).max(1)
        idx = torch.where(values == 0, seq_len - 1, idx)
        last = seq_len - idx - 1
        masked = tokens * mask.unsqueeze(-1).to(tokens.dtype)
        return masked[torch.arange(tokens.shape[0], device=tokens.device), last]

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "embedding_dimension": self.embedding_dimension,
            "pooling_mode": self.pooling_mode,
            "include_prompt": self.include_prompt,
        }

    def save(self, path: str) -> None:
        with open(os.path.join(path, "config.json"), "w", encoding="utf8") as f:
            json.dump(self.get_config_dict(), f, indent=4)

    @classmethod
    def load(cls, path: str) -> "Pooling":
        with open(os.path.join(path, "config.json"), encoding="utf8") as f:
            config = json.load(f)
        return cls(**parse_config(config))


def parse_config(config: dict[str, Any]) -> dict[str, Any]:
    """Accept both the legacy boolean form and the ``pooling_mode`` form of 1_Pooling/config.json."""
    dim = config.get("embedding_dimension", config.get("word_embedding_dimension"))
    if dim is None:
        raise ValueError("Pooling config has neither 'embedding_dimension' nor 'word_embedding_dimension'")
    mode = config.get("pooling_mode")
    if mode is None:
        mode = tuple(m for key, m in LEGACY_KEYS.items() if config.get(key)) or ("mean",)
    return {"embedding_dimension": dim, "pooling_mode": mode, "include_prompt": config.get("include_prompt", True)}


def _exclude_prompt(mask: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """Zero the prompt's positions (after any left padding) so pooling skips them."""
    start = mask.to(torch.int32).argmax(dim=1)
    positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
    keep = positions >= (start + prompt_length).unsqueeze(1)
    return mask * keep.to(mask.dtype)
