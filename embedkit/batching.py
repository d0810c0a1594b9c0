"""How encode() feeds the model: chunks tokenized ahead, batches by token length, batches side by side."""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

TOKENIZE_CHUNK = 16384  # texts tokenized and length-sorted together
FIRST_CHUNK = 1024  # on accelerators, the first chunk: the device waits only for its tokenization


def text_chunks(texts: list[str], ramp: bool) -> list[list[str]]:
    """``texts`` in slices that are tokenized and length-sorted together, ``TOKENIZE_CHUNK`` each. With
    ``ramp`` (accelerators, where the next slice is tokenized while this one runs) the slices start at
    ``FIRST_CHUNK`` and double, so the device starts early and tokenization stays ahead of it."""
    chunks, start, size = [], 0, FIRST_CHUNK if ramp else TOKENIZE_CHUNK
    while start < len(texts):
        chunks.append(texts[start : start + size])
        start, size = start + size, min(2 * size, TOKENIZE_CHUNK)
    return chunks


def tokenized_chunks(transformer, chunks: list[list[str]], prefetch: bool):
    """(offset, features) per chunk; with ``prefetch`` the next chunk is tokenized while this one runs."""
    offset = 0
    if not prefetch or len(chunks) < 2:
        for chunk in chunks:
            yield offset, transformer.tokenize(chunk)
            offset += len(chunk)
        return
    with ThreadPoolExecutor(max_workers=1) as executor:
        pending = executor.submit(transformer.tokenize, chunks[0])
        for n, chunk in enumerate(chunks):
            features = pending.result()
            if n + 1 < len(chunks):
                pending = executor.submit(transformer.tokenize, chunks[n + 1])
            yield offset, features
            offset += len(chunk)


def in_parallel(fn, items, workers: int):
    """``fn`` over ``items``, results in order. With several workers, batches run side by side in threads
    with one torch thread each: on CPU, whole GEMMs per core beat one GEMM split across the cores. The
    thread count is set in each worker (it is per thread under OpenMP), so the caller's is never touched."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, initializer=torch.set_num_threads, initargs=(1,)) as executor:
        pending: deque = deque()
        for item in items:
            pending.append(executor.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def token_lengths(features) -> np.ndarray:
    """Tokens per text of unpadded tokenizer ``features``."""
    return np.fromiter((len(ids) for ids in features["input_ids"]), dtype=np.int64, count=len(features["input_ids"]))


def token_batches(lengths: np.ndarray, batch_size: int, max_batch_tokens: int | None) -> list[np.ndarray]:
    """Indices longest first, cut into batches of at most ``batch_size`` texts and ``max_batch_tokens``
    padded tokens (a text longer than the budget still gets a batch of its own)."""
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        end = min(start + batch_size, len(order))
        if max_batch_tokens is not None:
            end = min(end, start + max(1, max_batch_tokens // int(lengths[order[start]])))
        batches.append(order[start:end])
        start = end
    return batches
