"""Test helpers shared by the test modules (kept out of conftest.py so that imports are unambiguous)."""

from __future__ import annotations

import numpy as np
import torch

# A plain 2-layer BERT (hidden size 32) that uses the packaged tokenizer's vocabulary.
TINY_BERT = dict(
    vocab_size=30522,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=128,
)

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


def cosines(a, b) -> np.ndarray:
    """Row-wise cosine similarity of two embedding matrices."""
    return np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def oracle_model(
    bert_dir: str,
    pooling_mode="mean",
    dense=None,
    normalize=False,
    include_prompt=True,
    prompts=None,
    default_prompt_name=None,
    max_seq_length=None,
):
    """A tiny model built with the sentence-transformers oracle's own modules."""
    from sentence_transformers import SentenceTransformer as OracleST
    from sentence_transformers.sentence_transformer.modules import (
        Dense,
        Normalize,
        Pooling,
        Transformer,
    )

    transformer = Transformer(bert_dir, max_seq_length=max_seq_length)
    pooling = Pooling(32, pooling_mode=pooling_mode, include_prompt=include_prompt)
    modules = [transformer, pooling]
    if dense is not None:
        torch.manual_seed(1)
        modules.append(Dense(pooling.get_embedding_dimension(), dense[0], activation_function=dense[1]))
    if normalize:
        modules.append(Normalize())
    return OracleST(modules=modules, prompts=prompts, default_prompt_name=default_prompt_name, device="cpu")


def stored(db: str, model_dir: str) -> dict:
    """id -> (text, metadata) of every document of the index at ``db``."""
    from embedkit import SentenceTransformer
    from integrations import open_index

    with open_index(db, SentenceTransformer(model_dir, device="cpu"), create=False) as index:
        return {r.id: (r.text, r.metadata) for r in index}


LENGTHS = (10, 300, 900)  # tokens, [CLS] and [SEP] included: under MiniLM's 256, under its 512 positions, over
WORDS = ("tea", "river", "stone", "cloud", "green", "house", "music", "light")


def texts_of(tokens: tuple[int, ...] = LENGTHS) -> list[str]:
    """Texts of exactly these many BERT tokens ([CLS] and [SEP] included), of single-piece words."""
    return [" ".join(WORDS[i % len(WORDS)] for i in range(n - 2)) for n in tokens]
