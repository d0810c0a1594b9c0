"""Optional dependencies: a feature whose extra is missing says which pip command installs it."""

from __future__ import annotations

import importlib

EXTRAS = {
    "langchain": "langchain_core",
    "onnx": ("onnxruntime", "onnx"),
    "postgres": ("psycopg", "pgvector"),
    "ray": ("ray", "pyarrow"),
}


def missing(module: str, extra: str, feature: str) -> ImportError:
    return ImportError(
        f"{feature} needs the {module!r} package, which is not installed: pip install 'embedkit-search[{extra}]'"
    )


def require(extra: str, feature: str) -> None:
    """Import the packages of ``extra``, or raise an ImportError that names the install command."""
    modules = EXTRAS[extra]
    for module in (modules,) if isinstance(modules, str) else modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise missing(module, extra, feature) from exc
