"""Encode an iterable of texts of any length straight into a ``.npy`` file, with bounded memory.

The file gets a fixed-size header that is rewritten with the row count after every chunk, so rows can be
appended as they are encoded and the file is a valid .npy of the rows written so far at every moment
(an interrupted run leaves no file that numpy misreads). A ``<file>.progress.json`` beside it records how
many rows are done; ``resume=True`` skips that many texts and continues. Chunks start small and double up
to ``chunk_size``, so a short run resumes close to where it stopped. ``numpy.load(path, mmap_mode="r")``
reads the result.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable

import numpy as np
from tqdm.auto import tqdm

from .._checks import check_positive_int

HEADER_BYTES = 128  # magic + version + length + padded dict: room for any realistic shape
FIRST_CHUNK = 256  # texts in the first chunk; each next one is twice as large, up to chunk_size
MAGIC = b"\x93NUMPY\x01\x00"


def npy_header(dtype: np.dtype, rows: int, dim: int) -> bytes:
    """A version 1.0 .npy header of exactly HEADER_BYTES bytes."""
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (rows, dim)})
    body = text.encode("latin1")
    pad = HEADER_BYTES - len(MAGIC) - 2 - len(body) - 1
    if pad < 0:
        raise ValueError(f"shape ({rows}, {dim}) does not fit the reserved .npy header")
    body += b" " * pad + b"\n"
    return MAGIC + len(body).to_bytes(2, "little") + body


def encode_to_file(
    model,
    sentences: Iterable[str],
    path: str,
    chunk_size: int = 10000,
    resume: bool = False,
    show_progress_bar: bool | None = None,
    total: int | None = None,
    **encode_kwargs,
) -> np.memmap:
    """Stream ``model.encode`` of ``sentences`` (any iterable, e.g. a generator over a huge file) into
    the .npy file ``path``, ``chunk_size`` texts at a time. Returns a read-only memmap of the result."""
    check_positive_int("chunk_size", chunk_size)
    if isinstance(sentences, (str, bytes)) or sentences is None:
        raise TypeError(f"encode_to_file() expects an iterable of str, got {type(sentences).__name__}")
    precision = encode_kwargs.get("precision", "float32")
    if precision in ("int8", "uint8") and model.quantization_ranges is None:
        raise ValueError(f"precision={precision!r} needs saved ranges: call model.set_quantization_ranges() first")
    progress_file = path + ".progress.json"
    done, dim, dtype = 0, None, None
    if resume and os.path.exists(progress_file) and os.path.exists(path):
        with open(progress_file) as f:
            state = json.load(f)
        done, dim, dtype = state["rows"], state["dim"], np.dtype(state["dtype"])
        if os.path.getsize(path) < HEADER_BYTES + done * dim * dtype.itemsize:
            raise ValueError(f"{path} is shorter than its progress file says; start again without resume")
        mode = "r+b"
    else:
        mode = "wb"
    if show_progress_bar is None:
        show_progress_bar = True
    texts = iter(sentences)
    skipped = sum(1 for _ in itertools.islice(texts, done))
    if skipped < done:
        raise ValueError(f"resume: the input has {skipped} texts, but {done} were already encoded")
    with (
        open(path, mode) as out,
        tqdm(total=total, initial=done, desc="Encoding", unit="text", disable=not show_progress_bar) as bar,
    ):
        if mode == "wb":
            out.write(npy_header(np.dtype(np.float32), 0, 0))  # an empty array until the first chunk
        out.seek(HEADER_BYTES + done * (dim * dtype.itemsize if dim else 0))
        out.truncate()
        size = min(chunk_size, FIRST_CHUNK)
        while chunk := list(itertools.islice(texts, size)):
            size = min(chunk_size, size * 2)
            # the bar moves per batch; a pool reports per chunk
            per_batch = bar if show_progress_bar and encode_kwargs.get("pool") is None else False
            emb = model.encode(chunk, show_progress_bar=per_batch, convert_to_numpy=True, **encode_kwargs)
            if dim is None:
                dim, dtype = emb.shape[1], emb.dtype
            elif emb.shape[1] != dim or emb.dtype != dtype:
                raise ValueError(
                    f"{path} holds {dim}-wide {dtype} rows; this run produces {emb.shape[1]}-wide {emb.dtype}"
                )
            out.write(np.ascontiguousarray(emb).tobytes())
            done += len(chunk)
            out.seek(0)
            out.write(npy_header(dtype, done, dim))  # the file now reads as the rows so far
            out.seek(0, os.SEEK_END)
            out.flush()
            _save_progress(progress_file, done, dim, dtype)
            if per_batch is False:
                bar.update(len(chunk))
        if dim is None:  # nothing at all to encode: take the shape of an empty result
            empty = model.encode([], show_progress_bar=False, **encode_kwargs)
            dim, dtype = empty.shape[1], empty.dtype
        out.seek(0)
        out.write(npy_header(dtype, done, dim))
    if os.path.exists(progress_file):
        os.remove(progress_file)
    return np.load(path, mmap_mode="r")


def _save_progress(file: str, rows: int, dim: int, dtype: np.dtype) -> None:
    tmp = file + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"rows": rows, "dim": int(dim), "dtype": dtype.str}, f)
    os.replace(tmp, file)
