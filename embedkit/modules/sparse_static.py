"""SparseStaticEmbedding: inference-free SPLADE's query side, a learned weight per vocabulary entry.

A text's vector holds, for each token it contains, that token's weight (and 0 elsewhere): no model runs,
only the tokenizer (without special tokens, as sentence-transformers does). Saved as sentence-transformers
saves it: the tokenizer's files, ``model.safetensors`` with the ``weight`` vector, ``config.json``.
"""

from __future__ import annotations

import json
import os

import torch


class SparseStaticEmbedding:
    """Static sparse vectors from ``tokenizer`` and ``weight`` (one float per vocabulary entry)."""

    def __init__(self, tokenizer, weight: torch.Tensor, frozen: bool = False):
        if weight.dim() != 1 or weight.shape[0] < len(tokenizer):
            raise ValueError(
                f"weight must be 1-D with one value per token ({len(tokenizer)}), got shape {tuple(weight.shape)}"
            )
        self.tokenizer, self.weight, self.frozen = tokenizer, weight.detach().float().cpu(), frozen

    @classmethod
    def load(cls, path: str) -> SparseStaticEmbedding:
        from safetensors.torch import load_file
        from transformers import AutoTokenizer

        with open(os.path.join(path, "config.json"), encoding="utf8") as f:
            config = json.load(f)
        weights = load_file(os.path.join(path, "model.safetensors"))
        if "weight" not in weights:
            raise ValueError(f"{path}/model.safetensors holds no 'weight' tensor (it holds {sorted(weights)})")
        return cls(AutoTokenizer.from_pretrained(path), weights["weight"], bool(config.get("frozen", False)))

    def save(self, path: str) -> None:
        from safetensors.torch import save_file

        os.makedirs(path, exist_ok=True)
        self.tokenizer.save_pretrained(path)
        save_file({"weight": self.weight.contiguous()}, os.path.join(path, "model.safetensors"))
        with open(os.path.join(path, "config.json"), "w", encoding="utf8") as f:
            json.dump({"frozen": self.frozen}, f, indent=4)

    @property
    def dimension(self) -> int:
        return self.weight.shape[0]

    def encode(self, texts: list[str]) -> torch.Tensor:
        """The [len(texts), dimension] sparse COO vectors of ``texts`` (truncated as the tokenizer's
        ``model_max_length`` says)."""
        ids = [
            sorted(set(t)) for t in self.tokenizer(list(texts), truncation=True, add_special_tokens=False)["input_ids"]
        ]
        rows = torch.tensor([i for i, t in enumerate(ids) for _ in t], dtype=torch.long)
        columns = torch.tensor([c for t in ids for c in t], dtype=torch.long)
        values = self.weight[columns]
        keep = values != 0
        index = torch.stack([rows[keep], columns[keep]])
        return torch.sparse_coo_tensor(
            index, values[keep], (len(ids), self.dimension), check_invariants=False
        ).coalesce()
