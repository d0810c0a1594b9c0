"""A 768-dimensional torch-free encoder: Haystack's suites write 768-dimensional embeddings. (A module of
its own: ``from conftest import`` would find whichever folder's conftest was imported first.)"""

from __future__ import annotations

import zlib

import numpy as np


class Hash768:
    """The same unit vector for the same text, 768 wide."""

    model_name = "hash-768"
    prompts: dict[str, str] = {}

    def get_embedding_dimension(self) -> int:
        return 768

    def encode_document(self, texts, **kw) -> np.ndarray:
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=768) for t in texts]
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), 768)

    encode_query = encode_document
