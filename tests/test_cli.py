"""The `embedkit encode` command writes what model.encode returns."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from embedkit import SentenceTransformer


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "embedkit.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_encode_lines_and_jsonl(tmp_path, prompt_model_dir):
    texts = ["first line", "second, longer line of text", ""]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    model = SentenceTransformer(prompt_model_dir, device="cpu")

    out = run("encode", str(tmp_path / "in.txt"), "-o", str(tmp_path / "a.npy"), "-m", prompt_model_dir)
    assert out.returncode == 0, out.stderr
    assert "Encoding" in out.stderr  # the progress bar
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), model.encode(texts), atol=1e-6)

    out = run("encode", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "b.npy"), "-m", prompt_model_dir,
              "--role", "document", "--precision", "ubinary", "-q")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert np.array_equal(np.load(tmp_path / "b.npy"), model.encode_document(texts, precision="ubinary"))


@pytest.mark.parametrize(
    "content, message",
    [('{"text": "ok"}\nnot json\n', "bad.jsonl:2: invalid JSON"), ('{"body": "x"}\n', "bad.jsonl:1: expected an object with a string 'text' field")],
)
def test_bad_jsonl_names_the_line(tmp_path, prompt_model_dir, content, message):
    (tmp_path / "bad.jsonl").write_text(content)
    out = run("encode", str(tmp_path / "bad.jsonl"), "-m", prompt_model_dir, "-o", str(tmp_path / "x.npy"))
    assert out.returncode != 0 and message in out.stderr
    assert not (tmp_path / "x.npy").exists()


def test_missing_model_is_a_clean_error(tmp_path):
    (tmp_path / "in.txt").write_text("x\n")
    out = run("encode", str(tmp_path / "in.txt"), "-m", str(tmp_path / "nope"), "-o", str(tmp_path / "x.npy"))
    assert out.returncode != 0
    assert "embedkit encode: Model" in out.stderr and "Traceback" not in out.stderr
