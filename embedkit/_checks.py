"""Argument checks shared by the encoder, the pool, the out-of-core writer and the stores."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .quantization import PRECISIONS


def check_texts(sentences, caller: str = "encode()") -> list[str]:
    """A list of str from a str or an iterable of str; TypeError names the first bad item."""
    if isinstance(sentences, str):
        return [sentences]
    if sentences is None or isinstance(sentences, (bytes, bytearray, dict)) or not isinstance(sentences, Iterable):
        raise TypeError(f"{caller} expects a str or a list of str, got {type(sentences).__name__}")
    texts = sentences.tolist() if isinstance(sentences, np.ndarray) else list(sentences)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{caller} input at index {i} is {type(text).__name__}, expected str")
    return texts


def check_positive_int(name: str, value) -> None:
    """ValueError unless ``value`` is an int >= 1 (bools are not counts)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_non_negative_int(name: str, value) -> None:
    """ValueError unless ``value`` is an int >= 0."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")


OUTPUT_VALUES = ("sentence_embedding", "token_embeddings", None)


def check_encode_options(batch_size, max_batch_tokens, precision: str, output_value, pool) -> None:
    """``encode()``'s options, each alone and together."""
    check_positive_int("batch_size", batch_size)
    if max_batch_tokens is not None:
        check_positive_int("max_batch_tokens", max_batch_tokens)
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; expected one of {PRECISIONS}")
    if output_value not in OUTPUT_VALUES:
        raise ValueError(f"Unknown output_value {output_value!r}; expected one of {OUTPUT_VALUES}")
    if precision != "float32" and output_value != "sentence_embedding":
        raise ValueError(f"precision={precision!r} applies only to output_value='sentence_embedding'")
    if pool is not None and output_value != "sentence_embedding":
        raise ValueError("a pool returns sentence embeddings only (output_value='sentence_embedding')")


def encode_inputs(model, sentences, kwargs: dict, token_ids, pool, device) -> tuple[bool, list[str], list | None]:
    """(one text?, the texts, the token ids to use) of an ``encode()`` call: sentence-transformers 6.x's
    ``inputs`` name taken, unknown keywords refused, ``token_ids`` checked against the texts (and dropped
    for a model that lower-cases the text, since they were made of the text before lowering)."""
    if "inputs" in kwargs and sentences is None:
        sentences = kwargs.pop("inputs")
    if kwargs:
        raise ValueError(f"encode() got unknown keyword arguments: {sorted(kwargs)}")
    texts = check_texts(sentences)
    if token_ids is not None and (len(token_ids) != len(texts) or pool is not None or isinstance(device, list)):
        raise ValueError("token_ids needs one entry per sentence, and no pool")
    return isinstance(sentences, str), texts, None if model.transformer.do_lower_case else token_ids
