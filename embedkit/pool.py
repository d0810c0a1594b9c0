"""Encoding with a pool of worker processes, one per device (GPUs) or per share of the CPU cores.

Workers are started with the ``spawn`` method, so a script that uses a pool must guard its entry point::

    if __name__ == "__main__":
        model = SentenceTransformer("all-MiniLM-L6-v2")
        with model.start_multi_process_pool() as pool:
            embeddings = model.encode(texts, pool=pool)

The model reaches the workers as a saved folder of safetensors weights, not as serialized Python objects.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import queue
import shutil
import tempfile
import traceback
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ._checks import check_positive_int

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2
MAX_CPU_WORKERS = 4


class WorkerError(RuntimeError):
    """An encoding worker raised; the message carries its traceback."""


class EncodePool:
    """Worker processes that each hold a copy of a model. Use as a context manager, or call ``stop()``."""

    def __init__(self, model, target_devices: list[str] | None = None):
        backend = model.backend
        if target_devices is None:
            if torch.cuda.is_available() and backend == "torch":
                target_devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
            else:
                target_devices = ["cpu"] * max(1, min(MAX_CPU_WORKERS, os.cpu_count() or 1))
        if not target_devices:
            raise ValueError("target_devices must name at least one device")
        if backend == "onnx" and any(not str(d).startswith("cpu") for d in target_devices):
            raise ValueError(f"the onnx backend runs on the CPU; got target_devices={list(target_devices)}")
        cpu_workers = sum(str(d).startswith("cpu") for d in target_devices)
        threads = max(1, (os.cpu_count() or 1) // max(1, cpu_workers))  # split the cores, never oversubscribe
        self.devices = [str(d) for d in target_devices]
        self._folder = tempfile.mkdtemp(prefix="embedkit-pool-")
        _quiet_save(model, self._folder)
        ctx = multiprocessing.get_context("spawn")
        self._inputs, self._outputs = ctx.Queue(), ctx.Queue()
        self._processes = [
            ctx.Process(
                target=_work,
                args=(type(model), self._folder, d, threads, backend, self._inputs, self._outputs),
                daemon=True,
            )
            for d in self.devices
        ]
        self._job = 0
        self.closed = False
        for p in self._processes:
            p.start()
        try:
            ready = 0
            while ready < len(self._processes):
                status, _, _, payload = self._next_message()
                if status == "error":
                    raise WorkerError(f"an encoding worker failed:\n{payload}")
                ready += status == "ready"
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> EncodePool:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the workers and remove the model copy. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        for p in self._processes:
            if p.is_alive():
                self._inputs.put(None)
        for p in self._processes:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        for q in (self._inputs, self._outputs):
            q.close()
            q.cancel_join_thread()
        shutil.rmtree(self._folder, ignore_errors=True)

    def _next_message(self) -> tuple:
        """The next worker message; raises as soon as a worker is found dead (within a poll interval)."""
        while True:
            try:
                message = self._outputs.get(timeout=POLL_SECONDS)
            except queue.Empty:
                message = None
            self._check_alive()
            if message is not None:
                return message

    def _check_alive(self) -> None:
        for i, p in enumerate(self._processes):
            if p.exitcode is not None:
                try:  # a worker that reported an error before exiting: raise that, with its traceback
                    last = self._outputs.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    last = None
                self.stop()
                if last is not None and last[0] == "error":
                    raise WorkerError(f"an encoding worker failed:\n{last[3]}")
                raise RuntimeError(
                    f"encoding worker {i} ({self.devices[i]}, pid {p.pid}) died with exit code {p.exitcode}; "
                    "the pool was stopped"
                )

    def map(self, texts: list[str], chunk_size: int | None, progress: bool, **encode_kwargs):
        """Encode ``texts`` in chunks across the workers with ``model.encode(chunk, **encode_kwargs)``; rows
        come back in input order, as one array (or one tensor, for a sparse encoder's sparse tensors)."""
        if self.closed:
            raise RuntimeError("this pool was stopped; start a new one with start_multi_process_pool()")
        self._check_alive()
        if chunk_size is None:
            chunk_size = max(1, min(math.ceil(len(texts) / (len(self._processes) * 10)), 5000))
        else:
            check_positive_int("chunk_size", chunk_size)
        self._job += 1
        starts = range(0, len(texts), chunk_size)
        for n, start in enumerate(starts):
            self._inputs.put((self._job, n, texts[start : start + chunk_size], encode_kwargs))
        results: dict[int, Any] = {}
        failure = None
        with tqdm(total=len(texts), desc="Encoding", unit="text", disable=not progress) as bar:
            while len(results) < len(starts):
                status, job, n, payload = self._next_message()
                if job != self._job:
                    continue  # a leftover from an earlier, failed call
                if status == "error":
                    failure = failure or payload
                    results[n] = None
                    continue
                results[n] = payload
                bar.update(payload.shape[0])
        if failure is not None:
            raise WorkerError(f"an encoding worker raised:\n{failure}")
        parts = [results[n] for n in range(len(starts))]
        return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)


def _quiet_save(model, folder: str) -> None:
    """Save without transformers' progress bar."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save(folder)
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def _work(model_class, folder: str, device: str, threads: int, backend: str, inputs, outputs) -> None:
    """The worker loop: load the model folder with its backend once (as ``model_class``, which a spawned
    process imports by name), then encode chunks until told to stop. An onnx-backend model's folder holds
    its graph, so workers never export it again."""
    try:
        torch.set_num_threads(threads)
        model = model_class(folder, device=device, backend=backend)
    except BaseException:
        outputs.put(("error", 0, None, traceback.format_exc()))
        return
    outputs.put(("ready", 0, None, None))
    while True:
        item = inputs.get()
        if item is None:
            return
        job, n, texts, kwargs = item
        try:
            outputs.put(("ok", job, n, _encode(model, texts, kwargs)))
        except BaseException:
            outputs.put(("error", job, n, traceback.format_exc()))


def _encode(model, texts: list[str], kwargs: dict[str, Any]):
    return model.encode(texts, show_progress_bar=False, **kwargs)
