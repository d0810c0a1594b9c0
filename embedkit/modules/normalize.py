"""Normalize: L2-normalize the sentence embedding."""

from __future__ import annotations

import json
import os
from typing import Any

import torch.nn.functional as F
from torch import nn


class Normalize(nn.Module):
    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        features["sentence_embedding"] = F.normalize(features["sentence_embedding"], p=2, dim=-1)
        return features

    def save(self, path: str) -> None:
        with open(os.path.join(path, "config.json"), "w", encoding="utf8") as f:
            json.dump({}, f)

    @classmethod
    def load(cls, path: str) -> "Normalize":
        return cls()
