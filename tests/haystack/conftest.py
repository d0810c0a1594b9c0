"""What the Haystack tests share: a 768-dimensional torch-free encoder (Haystack's suites write
768-dimensional embeddings) and a document store over each backend the issue names."""

from __future__ import annotations

import pytest
from hash768 import Hash768
from store_workers import Backend

pytest.importorskip("haystack")  # the dev extra installs it; without it these tests cannot run

from integrations.haystack import EmbedkitDocumentStore  # noqa: E402

STORES = ["faiss-flat-float32", "sqlite", "postgres"]


@pytest.fixture(params=STORES)
def store_backend(request, tmp_path) -> Backend:
    return Backend(request.param, tmp_path, request)


@pytest.fixture
def haystack_store(store_backend):
    index = store_backend.open(Hash768())
    yield EmbedkitDocumentStore(index=index)
    index.close()
