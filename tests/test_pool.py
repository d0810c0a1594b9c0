"""The multi-process pool: order, parity with one process, whole-result calibration, failures."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from helpers import cosines

from embedkit import SentenceTransformer, quantize_embeddings
from embedkit.pool import WorkerError

TEXTS = [f"text number {i} " + "word " * (i % 17) for i in range(57)]


@pytest.fixture(scope="module")
def pool(tiny_model):
    with tiny_model.start_multi_process_pool(["cpu", "cpu"]) as pool:
        yield pool


@pytest.mark.slow
@pytest.mark.parametrize("chunk_size", [None, 1, 5, 100])
def test_pool_matches_single_process_in_order(tiny_model, pool, chunk_size):
    expected = tiny_model.encode(TEXTS)
    got = tiny_model.encode(TEXTS, pool=pool, chunk_size=chunk_size)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-5


def test_pool_options_match(tiny_model, pool):
    for kwargs in ({"prompt_name": "query"}, {"normalize_embeddings": True}, {"truncate_dim": 8}):
        expected = tiny_model.encode(TEXTS, **kwargs)
        assert np.abs(tiny_model.encode(TEXTS, pool=pool, chunk_size=7, **kwargs) - expected).max() <= 1e-5
    sts = tiny_model.encode_multi_process(TEXTS, pool, prompt_name="passage", chunk_size=9)
    assert np.abs(sts - tiny_model.encode_document(TEXTS)).max() <= 1e-5
    assert tiny_model.encode([], pool=pool).shape == (0, 32)
    assert tiny_model.encode("one text", pool=pool).shape == (32,)


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_pool_quantizes_over_the_whole_result(tiny_model, pool, precision):
    floats = tiny_model.encode(TEXTS)
    got = tiny_model.encode(TEXTS, pool=pool, chunk_size=4, precision=precision)
    assert np.array_equal(got, quantize_embeddings(floats, precision))  # one calibration, not one per chunk


@pytest.mark.slow
def test_worker_exception_carries_its_traceback(tiny_model):
    with tiny_model.start_multi_process_pool(["meta"]) as broken:  # loads fine; encoding cannot copy out of meta
        with pytest.raises(WorkerError, match=r"(?s)an encoding worker raised:.*Traceback.*meta tensor"):
            tiny_model.encode(TEXTS, pool=broken)


@pytest.mark.slow
def test_worker_that_cannot_start_fails_the_pool(tiny_model):
    with pytest.raises(WorkerError, match=r"(?s)an encoding worker failed:.*Traceback.*no-such-device"):
        tiny_model.start_multi_process_pool(["no-such-device"])


@pytest.mark.slow
def test_killed_worker_fails_fast(tiny_model):
    pool = tiny_model.start_multi_process_pool(["cpu", "cpu"])
    os.kill(pool._processes[0].pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"encoding worker 0 \(cpu, pid \d+\) died with exit code -9"):
        tiny_model.encode(TEXTS, pool=pool)
    assert time.monotonic() - start < 10
    with pytest.raises(RuntimeError, match="this pool was stopped"):
        tiny_model.encode(TEXTS, pool=pool)


@pytest.mark.slow
def test_worker_killed_mid_call_fails_fast(tiny_model):
    pool = tiny_model.start_multi_process_pool(["cpu", "cpu"])
    victim = pool._processes[1].pid
    threading.Timer(0.5, os.kill, (victim, signal.SIGKILL)).start()
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="died with exit code -9"):
        tiny_model.encode(TEXTS * 400, pool=pool, chunk_size=50)
    assert time.monotonic() - start < 30
    pool.stop()


@pytest.mark.slow
def test_stop_is_idempotent_and_cleans_up(tiny_model):
    pool = tiny_model.start_multi_process_pool(["cpu"])
    folder = pool._folder
    tiny_model.stop_multi_process_pool(pool)
    pool.stop()
    assert not os.path.exists(folder)
    assert all(p.exitcode is not None for p in pool._processes)


@pytest.mark.slow
def test_spawned_script_with_main_guard(tmp_path, prompt_model_dir):
    script = tmp_path / "encode_script.py"
    script.write_text(
        textwrap.dedent(f"""
        from embedkit import SentenceTransformer

        if __name__ == "__main__":
            model = SentenceTransformer({prompt_model_dir!r}, device="cpu")
            texts = ["alpha", "beta", "gamma"] * 5
            with model.start_multi_process_pool() as pool:
                got = model.encode(texts, pool=pool, chunk_size=2)
            print(abs(got - model.encode(texts)).max() <= 1e-5, got.shape)
    """)
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "True (15, 32)"


@pytest.mark.slow
def test_onnx_backend_pool_runs_the_exported_graph(prompt_model_dir, tmp_path, monkeypatch):
    """Workers of an onnx-backend model load its folder with its backend and run its int8 graph (not float32
    torch, and without exporting it again), and only on CPUs."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("EMBEDKIT_HOME", str(tmp_path / "home"))
    folder = shutil.copytree(prompt_model_dir, tmp_path / "model")
    model = SentenceTransformer(str(folder), backend="onnx")
    with pytest.raises(ValueError, match=r"the onnx backend runs on the CPU; got target_devices=\['cuda:0'\]"):
        model.start_multi_process_pool(["cuda:0"])
    expected, fp32 = model.encode(TEXTS), SentenceTransformer(str(folder), device="cpu").encode(TEXTS)
    with model.start_multi_process_pool(["cpu", "cpu"]) as pool:
        got = model.encode(TEXTS, pool=pool, chunk_size=20)
    assert len(os.listdir(tmp_path / "home" / "onnx")) == 1  # the parent's export only
    assert cosines(got, expected).min() > 0.999  # activations are quantized per run, and the pool's runs differ
    assert not np.allclose(got, fp32, atol=1e-6)
