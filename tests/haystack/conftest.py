"""What the Haystack tests share: a 768-dimensional torch-free encoder (Haystack's suites write
768-dimensional embeddings) and a document store over each backend the issue names."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from store_workers import Backend

pytest.importorskip("haystack")  # the dev extra installs it; without it these tests cannot run

from integrations.haystack import EmbedkitDocumentStore  # noqa: E402

STORES = ["faiss-flat-float32", "sqlite", "postgres"]


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


@pytest.fixture(params=STORES)
def store_backend(request, tmp_path) -> Backend:
    return Backend(request.param, tmp_path, request)


@pytest.fixture
def haystack_store(store_backend):
    index = store_backend.open(Hash768())
    yield EmbedkitDocumentStore(index=index)
    index.close()
