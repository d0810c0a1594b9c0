"""How encode() feeds the model: chunks tokenized ahead, batches by token length, batches side by side."""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

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


def tokenized_chunks(tokenize, chunks: list[list[str]], prefetch: bool):
    """(offset, features) per chunk, ``tokenize(offset, chunk)`` making the features; with ``prefetch`` the
    next chunk is tokenized while this one runs."""
    offsets = np.cumsum([0] + [len(chunk) for chunk in chunks]).tolist()
    if not prefetch or len(chunks) < 2:
        for offset, chunk in zip(offsets, chunks):
            yield offset, tokenize(offset, chunk)
        return
    with ThreadPoolExecutor(max_workers=1) as executor:
        pending = executor.submit(tokenize, 0, chunks[0])
        for n, chunk in enumerate(chunks):
            features = pending.result()
            if n + 1 < len(chunks):
                pending = executor.submit(tokenize, offsets[n + 1], chunks[n + 1])
            yield offsets[n], features


def tokenizer_for(transformer, token_ids):
    """``tokenize(offset, chunk)`` for ``tokenized_chunks``: the transformer's, except for the texts whose ids
    ``token_ids`` already holds (by position in the whole input), which are taken as they are, cut to the
    model's length as the tokenizer would cut the text."""
    if token_ids is None or all(ids is None for ids in token_ids):
        return lambda offset, chunk: transformer.tokenize(chunk)

    def tokenize(offset, chunk):
        known = token_ids[offset : offset + len(chunk)]
        todo = [i for i, ids in enumerate(known) if ids is None]
        features = transformer.tokenize([chunk[i] for i in todo]) if todo else {"num_truncated": 0}
        ids = [None if row is None else transformer.cut(row) for row in known]
        cut = sum(row is not None and len(row) > transformer.max_seq_length for row in known)
        for i, row in zip(todo, features.get("input_ids", [])):
            ids[i] = row
        merged = {"input_ids": ids, "num_truncated": features["num_truncated"] + cut}
        if "token_type_ids" in transformer.tokenizer.model_input_names:
            types = features.get("token_type_ids")  # None: all 0, as for the known ids
            if types is not None:
                rows = [[0] * len(row) for row in ids]
                for i, row in zip(todo, types):
                    rows[i] = row
                types = rows
            merged["token_type_ids"] = types
        return merged

    return tokenize


def in_parallel(fn, items, workers: int):
    """``fn`` over ``items``, results in order. With several workers, batches run side by side in threads
    with one torch thread each: on CPU, whole GEMMs per core beat one GEMM split across the cores. The
    thread count is set in each worker (it is per thread under OpenMP), so the caller's is never touched."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, initializer=torch.set_num_threads, initargs=(1,)) as executor:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(executor.submit(fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BaseException:  # a Ctrl-C, or a batch that failed: the queued batches do not run
            for future in pending:
                future.cancel()
            raise


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


def pad_to_tensors(tokenizer, features, idx, lengths, device, pinned: bool = False) -> dict[str, Any]:
    """Rows ``idx`` of tokenized ``features`` as padded int64 tensors on ``device``, with their mask, padded
    as ``tokenizer`` pads.

    ``no_padding`` is set when every row fills the width; the model then runs without a mask,
    which lets SDPA take its faster unmasked kernels.
    """
    rows_length = lengths[idx]
    width = int(rows_length.max())
    left = tokenizer.padding_side == "left"
    positions = np.arange(width)
    mask = positions >= width - rows_length[:, None] if left else positions < rows_length[:, None]
    fills = {"input_ids": tokenizer.pad_token_id or 0, "token_type_ids": tokenizer.pad_token_type_id}
    arrays = {}
    for key, rows in features.items():
        if rows is None:  # every type id is 0: no rows to copy
            arrays[key] = np.where(mask, 0, fills.get(key, 0)).astype(np.int64)
            continue
        array = arrays[key] = np.full((len(idx), width), fills.get(key, 0), dtype=np.int64)
        for r, i in enumerate(idx):
            row = rows[i]
            if left:
                array[r, width - len(row) :] = row
            else:
                array[r, : len(row)] = row
    arrays["attention_mask"] = mask.astype(np.int64)
    batch: dict[str, Any] = {}
    for key, array in arrays.items():
        tensor = torch.from_numpy(array)
        batch[key] = tensor.pin_memory().to(device, non_blocking=True) if pinned else tensor.to(device)
    batch["no_padding"] = int(rows_length.min()) == width
    return batch


@torch.inference_mode()
def run(model, texts, prompt, batch_size, max_batch_tokens, output_value, progress, token_ids=None, options=None):
    """``model``'s encode: tokenize, sort by token length, run the modules batch by batch (``options`` go
    into each batch's features, for the model's own ``forward``).

    Returns the sentence embeddings as one tensor in input order (sparse if the model's are), or a
    per-input list for the other output values.
    """
    model.eval()
    transformer = model.transformer
    prompt_length = prompt_length_of(model, prompt) if prompt else None
    if prompt:
        texts = [prompt + t for t in texts]
    accelerated = model.device.type != "cpu"
    chunks = text_chunks(texts, ramp=accelerated)
    pinned = model.device.type == "cuda"
    truncated = []
    workers = torch.get_num_threads() if model.device.type == "cpu" and model.parallel_batches else 1
    workers = min(workers, len(texts))
    if workers > 1:  # a few texts still make one batch per core
        batch_size = min(batch_size, -(-len(texts) // workers))

    def jobs():
        for offset, features in tokenized_chunks(tokenizer_for(transformer, token_ids), chunks, prefetch=accelerated):
            truncated.append(features.pop("num_truncated"))
            lengths = token_lengths(features)
            for idx in token_batches(lengths, batch_size, max_batch_tokens):
                yield offset, idx, features, lengths

    def forward(job):
        offset, idx, features, lengths = job
        batch = transformer.pad_to_tensors(features, idx, lengths, model.device, pinned)
        if prompt_length is not None:
            batch["prompt_length"] = prompt_length
        batch.update(options or {})
        with torch.inference_mode():
            return offset, idx, model(batch)

    parts, positions, items = [], [], [None] * len(texts)
    external = hasattr(progress, "update")  # a bar of the caller's (encode_to_file) moves per batch
    bar_context = (
        contextlib.nullcontext(progress)
        if external
        else tqdm(total=len(texts), desc="Encoding", unit="text", disable=not progress)
    )
    with bar_context as bar:
        for offset, idx, out in in_parallel(forward, jobs(), workers):
            if output_value == "sentence_embedding":
                parts.append(out["sentence_embedding"])
                positions.append(torch.from_numpy(idx + offset))
            else:
                for j, i in enumerate(idx):
                    items[offset + i] = _select(out, j, output_value)
            bar.update(len(idx))
    if sum(truncated):
        logger.warning(
            "%d of %d inputs were longer than max_seq_length=%d tokens and were truncated",
            sum(truncated),
            len(texts),
            transformer.max_seq_length,
        )
    if output_value != "sentence_embedding":
        return items
    if not parts:
        return None
    emb = torch.cat(parts)
    order = torch.cat(positions).to(emb.device)
    if emb.is_sparse:  # rows renumbered into input order
        emb = emb.coalesce()
        rows, columns = emb.indices()
        return torch.sparse_coo_tensor(
            torch.stack([order[rows], columns]), emb.values(), emb.shape, check_invariants=False
        ).coalesce()
    ordered = torch.empty_like(emb)
    ordered[order] = emb
    return ordered


def prompt_length_of(model, prompt: str) -> int:
    """Tokens of the prompt alone, without a trailing special token (used by include_prompt=False)."""
    ids = model.transformer.tokenize([prompt])["input_ids"][0]
    special = set(model.tokenizer.all_special_ids)
    return len(ids) - 1 if ids and ids[-1] in special else len(ids)


def _select(out: dict[str, Any], j: int, output_value):
    """Row ``j`` of a batch for the per-input outputs (token embeddings, or everything as a dict)."""
    if output_value == "token_embeddings":
        return out["token_embeddings"][j][out["attention_mask"][j].bool()]
    n = out["input_ids"].shape[0]
    return {k: v[j] if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == n else v for k, v in out.items()}


def to_numpy(t: Tensor) -> np.ndarray:
    """A tensor on the host as numpy (half precisions as float32, which numpy lacks for bfloat16)."""
    t = t.detach().cpu()
    return (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t).numpy()
