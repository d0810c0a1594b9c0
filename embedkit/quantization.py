"""Quantize float embeddings to int8, uint8, binary or ubinary (bit-identical to sentence-transformers)."""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


def quantization_ranges(embeddings) -> np.ndarray:
    """Per-dimension [min; max] of ``embeddings``, shape (2, dim): the calibration int8/uint8 use."""
    emb = _as_float_array(embeddings, "calibration embeddings")
    if emb.ndim != 2 or emb.shape[0] < 2:
        raise ValueError(f"Calibration needs a 2-D array of at least 2 embeddings, got shape {emb.shape}")
    return np.vstack((emb.min(axis=0), emb.max(axis=0)))


def quantize_embeddings(
    embeddings, precision: str, ranges: np.ndarray | None = None, calibration_embeddings=None
) -> np.ndarray:
    """Quantize to ``precision``. int8/uint8 bucket each dimension over ``ranges`` (shape (2, dim)), which
    come from ``calibration_embeddings`` or else from ``embeddings`` themselves."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; expected one of {PRECISIONS}")
    emb = _as_float_array(embeddings, "embeddings")
    if precision == "float32":
        return emb.astype(np.float32)
    if precision.endswith("binary"):
        packed = np.packbits(emb > 0, axis=-1)
        return packed if precision == "ubinary" else (packed - 128).astype(np.int8)
    if emb.ndim == 2 and emb.shape[0] == 0:
        return np.zeros(emb.shape, dtype=np.int8 if precision == "int8" else np.uint8)
    if ranges is None:
        if calibration_embeddings is not None:
            ranges = quantization_ranges(calibration_embeddings)
        elif emb.ndim == 1 or emb.shape[0] == 1:
            raise ValueError(
                f"Cannot compute {precision} ranges from a single embedding: pass `ranges` or "
                "`calibration_embeddings`, or save ranges with SentenceTransformer.set_quantization_ranges()"
            )
        else:
            if emb.shape[0] < 100:
                logger.warning("Computing %s ranges from only %d embeddings", precision, emb.shape[0])
            ranges = quantization_ranges(emb)
    ranges = np.asarray(ranges, dtype=np.float32)
    if ranges.shape != (2, emb.shape[-1]):
        raise ValueError(f"ranges must have shape (2, {emb.shape[-1]}), got {ranges.shape}")
    starts, steps = int8_steps(ranges)
    buckets = np.clip(np.floor((emb - starts) / steps), 0, 255)
    return buckets.astype(np.uint8) if precision == "uint8" else (buckets - 128).astype(np.int8)


def int8_steps(ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, width) of the 256 buckets of each dimension over ``ranges``."""
    starts = ranges[0]
    steps = (ranges[1] - starts) / 255
    return starts, np.where(steps == 0, 1, steps)


def dequantize_int8(codes: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """float32 vectors from int8 codes made over ``ranges``: the centre of each code's bucket."""
    starts, steps = int8_steps(ranges)
    return ((codes.astype(np.float32) + 128.5) * steps + starts).astype(np.float32)


def calibration_ranges(vectors: np.ndarray, saved=None) -> np.ndarray:
    """int8 ranges for a store of unit vectors: ``saved`` (the model's) if it fits, else the batch's own
    (with a 10% margin, clipped to [-1, 1]) when it has at least 100 vectors, else [-1, 1]."""
    d = vectors.shape[1]
    if saved is not None and np.shape(saved) == (2, d):
        return np.asarray(saved, dtype=np.float32)
    if len(vectors) >= 100:
        lo, hi = vectors.min(axis=0), vectors.max(axis=0)
        margin = 0.1 * (hi - lo)
        return np.vstack([np.maximum(lo - margin, -1), np.minimum(hi + margin, 1)]).astype(np.float32)
    return np.vstack([-np.ones(d), np.ones(d)]).astype(np.float32)


def _as_float_array(embeddings, what: str) -> np.ndarray:
    if _is_tensor(embeddings):
        embeddings = embeddings.detach().float().cpu().numpy()
    elif isinstance(embeddings, list) and embeddings and _is_tensor(embeddings[0]):
        import torch

        embeddings = torch.stack(embeddings).detach().float().cpu().numpy()
    emb = np.asarray(embeddings)
    if emb.dtype.kind not in "f":
        raise TypeError(f"{what} must be floating point, got dtype {emb.dtype}")
    return emb


def _is_tensor(value) -> bool:
    """Whether ``value`` is a torch tensor, without importing torch for numpy callers."""
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")
