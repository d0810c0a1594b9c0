"""The Encoder protocol that the stores depend on, and a wrapper that makes a LangChain ``Embeddings``
(or any object with ``embed_documents`` / ``embed_query``) satisfy it."""

from __future__ import annotations

import logging
from typing import Any, Protocol, runtime_checkable

import numpy as np

from integrations.errors import DimensionMismatchError

logger = logging.getLogger(__name__)


@runtime_checkable
class Encoder(Protocol):
    """What the stores need from an encoder. ``quantization_ranges`` (shape (2, dim)) is optional: int8
    stores use it for their calibration when the encoder has it."""

    model_name: str | None
    prompts: dict[str, str]

    def encode_query(self, texts: list[str], **kw) -> np.ndarray: ...
    def encode_document(self, texts: list[str], **kw) -> np.ndarray: ...
    def get_embedding_dimension(self) -> int: ...


class EmbeddingsEncoder:
    """Wraps any object with LangChain's ``embed_documents`` / ``embed_query`` into the Encoder protocol."""

    prompts: dict[str, str] = {}

    def __init__(self, embeddings):
        self.embeddings = embeddings
        self.model_name = (
            getattr(embeddings, "model", None) or getattr(embeddings, "model_name", None) or type(embeddings).__name__
        )
        self._dimension: int | None = None

    def encode_query(self, texts: list[str], **kw) -> np.ndarray:
        return self._array([self.embeddings.embed_query(t) for t in texts])

    def encode_document(self, texts: list[str], **kw) -> np.ndarray:
        return self._array(self.embeddings.embed_documents(list(texts)))

    def get_embedding_dimension(self) -> int:
        if self._dimension is None:
            self._dimension = len(self.embeddings.embed_query("dimension probe"))
        return self._dimension

    def _array(self, rows) -> np.ndarray:
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)


class RecordedModel:
    """Stands in for the model an index records (its name, dimension and prompts), so that the index
    opens for reading and editing without loading the model; embedding anything raises."""

    def __init__(self, info: dict[str, Any]):
        self.model_name, self.prompts = str(info["model"]), dict(info.get("prompts") or {})
        self.dimension = int(info["dimension"])

    def encode_query(self, texts: list[str], **kw) -> np.ndarray:
        raise RuntimeError(
            f"this index was opened without its model {self.model_name!r}: open it with the model to embed"
        )

    encode_document = encode_query

    def get_embedding_dimension(self) -> int:
        return self.dimension


def as_encoder(obj):
    """``obj`` if it already satisfies the Encoder protocol, else a wrapper around its LangChain methods."""
    if isinstance(obj, Encoder):
        return obj
    if hasattr(obj, "embed_documents") and hasattr(obj, "embed_query"):
        return EmbeddingsEncoder(obj)
    raise TypeError(
        "encoder must have model_name, prompts, encode_query, encode_document and get_embedding_dimension "
        f"(or embed_query and embed_documents); got {type(obj).__name__}"
    )


def encoder_info(encoder: Encoder) -> dict[str, Any]:
    """What an index records about its encoder: name, dimension and prompts."""
    return {
        "model": str(encoder.model_name or type(encoder).__name__),  # a model loaded from a Path names it
        "dimension": int(encoder.get_embedding_dimension()),
        "prompts": dict(encoder.prompts or {}),
    }


def check_info(stored: dict[str, Any], info: dict[str, Any], where: str) -> None:
    """Refuse an index at ``where`` built for another dimension than ``info`` (an encoder's); warn if the
    model or its prompts differ."""
    if stored.get("dimension") != info["dimension"]:
        raise DimensionMismatchError(
            f"{where} holds {stored.get('dimension')}-dimensional vectors from model {stored.get('model')!r}, "
            f"but the encoder {info['model']!r} produces {info['dimension']} dimensions"
        )
    if stored.get("model") != info["model"] or stored.get("prompts", {}) != info["prompts"]:
        logger.warning(
            "%s was built with model %r (prompts %r); now opened with %r (prompts %r)",
            where,
            stored.get("model"),
            stored.get("prompts"),
            info["model"],
            info["prompts"],
        )
