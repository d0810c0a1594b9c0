"""Read and write sentence-transformers model folders (modules.json and friends)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

from torch import nn

from .modules import Dense, Normalize, Pooling, SpladePooling, Transformer
from .modules.sparse_static import SparseStaticEmbedding

logger = logging.getLogger(__name__)

# What sentence-transformers 6.x writes into modules.json; loading also accepts the legacy
# ``sentence_transformers.models.X`` paths and any other path that ends in a known class name.
SAVED_TYPES = {
    Transformer: "sentence_transformers.base.modules.transformer.Transformer",
    Pooling: "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
    Dense: "sentence_transformers.base.modules.dense.Dense",
    Normalize: "sentence_transformers.base.modules.normalize.Normalize",
    SpladePooling: "sentence_transformers.sparse_encoder.modules.splade_pooling.SpladePooling",
}
BY_NAME = {cls.__name__: cls for cls in SAVED_TYPES} | {"MLMTransformer": Transformer}  # sentence-transformers 5
MODEL_CONFIG = "config_sentence_transformers.json"


ROUTER = "sentence_transformers.base.modules.router.Router"
STATIC = "sentence_transformers.sparse_encoder.modules.sparse_static_embedding.SparseStaticEmbedding"


@dataclasses.dataclass
class Routes:
    """An inference-free SPLADE folder's Router: the route whose modules are the model's chain, the routes
    that are a ``SparseStaticEmbedding`` each, and the Router's parameters (``default_route``: the route of
    ``encode`` without a task)."""

    chain: str
    static: dict[str, SparseStaticEmbedding]
    parameters: dict[str, Any]

    def module_for(self, task: str | None) -> SparseStaticEmbedding | None:
        """The static module that answers ``task`` (None: the chain does)."""
        route = task or self.parameters.get("default_route")
        if route is None or (route not in self.static and route != self.chain):
            raise ValueError(f"task must be one of {sorted([self.chain, *self.static])}, got {task!r}")
        return self.static.get(route)


def load_folder(
    path: str, trust_remote_code: bool = False, sparse: bool = False, **transformer_kwargs
) -> tuple[list[nn.Module], dict]:
    """Build the module chain of a folder (a plain Hugging Face one as a ``sparse`` encoder's if asked).
    Returns (modules, the saved model config); an inference-free SPLADE folder's ``Routes`` are in the
    config under ``"routes"``."""
    config = read_json(os.path.join(path, MODEL_CONFIG)) or {}
    modules_file = os.path.join(path, "modules.json")
    if not os.path.exists(modules_file):
        plain = plain_sparse_modules if sparse else plain_transformers_modules
        return plain(path, **transformer_kwargs), config
    entries = read_json(modules_file)
    if len(entries) == 1 and entries[0].get("type", "").endswith(".Router"):
        if not sparse:
            raise ValueError(f"{path} routes queries and documents (a Router); embedkit loads it as a SparseEncoder")
        modules, config["routes"] = load_routes(
            os.path.join(path, entries[0].get("path", "")), trust_remote_code, **transformer_kwargs
        )
        return modules, config
    modules = [
        load_module(
            entry.get("type", ""),
            os.path.join(path, entry.get("path", "")),
            entry.get("name"),
            modules_file,
            trust_remote_code,
            transformer_kwargs,
        )
        for entry in entries
    ]
    return modules, config


def load_module(type_path: str, module_path: str, name, where: str, trust_remote_code: bool, transformer_kwargs):
    """One module of a folder, of the sentence-transformers type ``type_path``."""
    cls = BY_NAME.get(type_path.rpartition(".")[2])
    if cls is None or not type_path.startswith(("sentence_transformers.", "embedkit.")):
        raise ValueError(
            f"{where}: module {name!r} has type {type_path!r}, which embedkit does not support "
            f"(supported: {sorted(BY_NAME)})"
        )
    if cls is Transformer:
        task = {"transformer_task": "fill-mask"} if type_path.endswith(".MLMTransformer") else {}
        return Transformer.load(module_path, **task, **transformer_kwargs)
    if cls is Dense:
        return Dense.load(module_path, trust_remote_code=trust_remote_code)
    return cls.load(module_path)


def load_routes(path: str, trust_remote_code: bool, **transformer_kwargs) -> tuple[list[nn.Module], Routes]:
    """An inference-free SPLADE Router (``router_config.json``): one route of modules (the SPLADE chain)
    and routes of one ``SparseStaticEmbedding`` each."""
    where = os.path.join(path, "router_config.json")
    config = read_json(where) or {}
    types, structure = config.get("types", {}), config.get("structure", {})
    chain, static = None, {}
    for route, names in structure.items():
        if len(names) == 1 and types.get(names[0], "").endswith(".SparseStaticEmbedding"):
            static[route] = SparseStaticEmbedding.load(os.path.join(path, names[0]))
        elif chain is None:
            chain = (
                route,
                [
                    load_module(
                        types.get(n, ""), os.path.join(path, n), n, where, trust_remote_code, transformer_kwargs
                    )
                    for n in names
                ],
            )
        else:
            raise ValueError(
                f"{where}: routes {chain[0]!r} and {route!r} both run models; embedkit loads Routers with one "
                "SPLADE route and SparseStaticEmbedding routes (inference-free SPLADE)"
            )
    if chain is None:
        raise ValueError(f"{where}: no route runs a model; embedkit needs one SPLADE route")
    return chain[1], Routes(chain[0], static, dict(config.get("parameters", {})))


def save_routes(modules: list[nn.Module], routes: Routes, path: str, model_config: dict[str, Any]) -> None:
    """Write ``modules`` and ``routes`` as sentence-transformers writes a Router folder."""
    types, structure = {}, {}
    os.makedirs(path, exist_ok=True)
    for route in [routes.chain, *routes.static]:
        members = modules if route == routes.chain else [routes.static[route]]
        structure[route] = []
        for i, module in enumerate(members):
            name = f"{route}_{i}_{type(module).__name__}"
            os.makedirs(os.path.join(path, name), exist_ok=True)
            module.save(os.path.join(path, name))
            types[name] = STATIC if route != routes.chain else SAVED_TYPES[type(module)]
            structure[route].append(name)
    write_json(
        os.path.join(path, "router_config.json"),
        {"types": types, "structure": structure, "parameters": routes.parameters},
    )
    write_json(os.path.join(path, "modules.json"), [{"idx": 0, "name": "0", "path": "", "type": ROUTER}])
    write_json(os.path.join(path, MODEL_CONFIG), model_config)


def plain_transformers_modules(path: str, **transformer_kwargs) -> list[nn.Module]:
    """A plain Hugging Face model: mean pooling, or last-token pooling for causal LMs."""
    transformer = Transformer(path, **transformer_kwargs)
    architectures = getattr(transformer.config, "architectures", None) or []
    mode = "lasttoken" if any(a.endswith("ForCausalLM") for a in architectures) else "mean"
    logger.info("%s has no modules.json: using %s pooling", path, mode)
    return [transformer, Pooling(transformer.get_word_embedding_dimension(), mode)]


def plain_sparse_modules(path: str, **transformer_kwargs) -> list[nn.Module]:
    """A plain Hugging Face masked-LM as a SPLADE encoder: its logits, max-pooled (as sentence-transformers)."""
    transformer = Transformer(path, transformer_task="fill-mask", **transformer_kwargs)
    architectures = getattr(transformer.config, "architectures", None) or []
    if not any(a.endswith("ForMaskedLM") for a in architectures):
        raise ValueError(
            f"{path} has no modules.json and is not a masked-LM model (architectures: {architectures}); "
            "a SparseEncoder loads SPLADE folders and plain ...ForMaskedLM models"
        )
    return [transformer, SpladePooling("max", "relu", transformer.get_word_embedding_dimension())]


def model_config(model) -> dict[str, Any]:
    """What ``config_sentence_transformers.json`` records of ``model``: versions, prompts, similarity,
    truncation and int8 ranges."""
    import torch
    import transformers

    from ._version import __version__

    versions = {"embedkit": __version__, "transformers": transformers.__version__, "pytorch": torch.__version__}
    config: dict[str, Any] = {
        "__version__": versions,
        "model_type": model.model_type,
        "prompts": model.prompts,
        "default_prompt_name": model.default_prompt_name,
        "similarity_fn_name": model.similarity_fn_name,
    }
    if model.truncate_dim is not None:
        config["truncate_dim"] = model.truncate_dim
    if model.quantization_ranges is not None:
        config["quantization_ranges"] = model.quantization_ranges.tolist()
    if getattr(model, "max_active_dims", None) is not None:
        config["max_active_dims"] = model.max_active_dims
    return config


def save_folder(modules: list[nn.Module], path: str, model_config: dict[str, Any]) -> None:
    """Write ``modules`` as a sentence-transformers folder, loadable by sentence-transformers 6.x."""
    os.makedirs(path, exist_ok=True)
    entries = []
    for idx, module in enumerate(modules):
        if type(module) not in SAVED_TYPES:
            raise TypeError(f"Cannot save module {idx} of type {type(module).__name__}")
        sub = "" if idx == 0 and isinstance(module, Transformer) else f"{idx}_{type(module).__name__}"
        os.makedirs(os.path.join(path, sub), exist_ok=True)
        module.save(os.path.join(path, sub))
        entries.append({"idx": idx, "name": str(idx), "path": sub, "type": SAVED_TYPES[type(module)]})
    write_json(os.path.join(path, "modules.json"), entries)
    write_json(os.path.join(path, MODEL_CONFIG), model_config)


def read_json(file: str) -> Any:
    """A folder's JSON file, or None where it does not exist; invalid JSON names the file."""
    if not os.path.exists(file):
        return None
    with open(file, encoding="utf8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{file} is not valid JSON: {exc}") from exc


def write_json(file: str, data: Any) -> None:
    with open(file, "w", encoding="utf8") as f:
        json.dump(data, f, indent=2)
