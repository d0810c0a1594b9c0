"""Dense: a linear layer with an activation on the sentence embedding."""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn


class Dense(nn.Module):
    """``activation(linear(x))`` on ``sentence_embedding``, plus an optional residual connection."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation_function: nn.Module | None = None,
        use_residual: bool = False,
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.bias = bias
        self.activation_function = nn.Tanh() if activation_function is None else activation_function
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.use_residual = use_residual
        if use_residual and in_features != out_features:
            self.residual = nn.Linear(in_features, out_features, bias=False)

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        x = features["sentence_embedding"]
        out = self.activation_function(self.linear(x))
        if self.use_residual:
            out = out + (x if self.in_features == self.out_features else self.residual(x))
        features["sentence_embedding"] = out
        return features

    def get_sentence_embedding_dimension(self) -> int:
        return self.out_features

    def get_config_dict(self) -> dict[str, Any]:
        act = type(self.activation_function)
        config = {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias,
            "activation_function": f"{act.__module__}.{act.__qualname__}",
        }
        if self.use_residual:
            config["use_residual"] = True
        return config

    def save(self, path: str) -> None:
        with open(os.path.join(path, "config.json"), "w", encoding="utf8") as f:
            json.dump(self.get_config_dict(), f, indent=4)
        state = {k: v.contiguous() for k, v in self.state_dict().items()}
        save_file(state, os.path.join(path, "model.safetensors"))

    @classmethod
    def load(cls, path: str, trust_remote_code: bool = False) -> "Dense":
        with open(os.path.join(path, "config.json"), encoding="utf8") as f:
            config = json.load(f)
        activation = config.pop("activation_function", None)
        keys = {"in_features", "out_features", "bias", "use_residual"}
        module = cls(
            **{k: v for k, v in config.items() if k in keys},
            activation_function=_activation(activation, trust_remote_code),
        )
        module.load_state_dict(_read_weights(path))
        return module


def _activation(path: str | None, trust_remote_code: bool) -> nn.Module:
    """Instantiate an activation from its dotted path: torch.nn classes always, others only if trusted."""
    if path is None:
        return nn.Tanh()
    if not (path.startswith("torch.") or trust_remote_code):
        raise ValueError(
            f"Dense activation {path!r} is not a torch class; load with trust_remote_code=True to allow it"
        )
    module_name, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), name)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"Dense activation {path!r} is not a torch.nn.Module class")
    return cls()


def _read_weights(path: str) -> dict[str, torch.Tensor]:
    file = os.path.join(path, "model.safetensors")
    if os.path.exists(file):
        return load_file(file)
    legacy = os.path.join(path, "pytorch_model.bin")
    if os.path.exists(legacy):  # older folders; weights_only refuses arbitrary objects
        return torch.load(legacy, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"No model.safetensors or pytorch_model.bin in {path!r}")
