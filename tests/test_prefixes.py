"""Tokenizing only what survives truncation gives the ids of a full ``tokenizer(..., truncation=True)`` call,
on WordPiece, SentencePiece-style Unigram and byte-level BPE tokenizers; others fall back to the full text."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from embedkit.prefixes import encode_truncated, prefix, word_local

CORPUS = pathlib.Path(__file__).resolve().parents[1] / "examples" / "corpus.jsonl"


def texts(n: int = 300, seed: int = 0) -> list[str]:
    """Documents of very different lengths, with runs of whitespace, accents, CJK, emoji and an unbroken blob."""
    sentences = [json.loads(line)["text"] for line in CORPUS.read_text().splitlines()]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        parts = [sentences[j] for j in rng.integers(0, len(sentences), rng.integers(1, 40))]
        text = (" " if i % 3 else "  \n\t").join(parts)
        if i % 7 == 0:
            text = "Über café naïve 東京の研究 🍎 " + text
        if i % 11 == 0:
            text = "x" * 3000 + " " + text  # no whitespace within the prefix
        out.append(text)
    return out + ["", " ", "one"]


def trained(kind: str) -> PreTrainedTokenizerFast:
    if kind == "unigram":
        raw = Tokenizer(models.Unigram())
        raw.normalizer = normalizers.NFKC()
        raw.pre_tokenizer = pre_tokenizers.Metaspace()
        raw.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=400, unk_token="<unk>", special_tokens=["<unk>"])
    else:
        raw = Tokenizer(models.BPE())
        raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        raw.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(texts(60, seed=1), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>" if kind == "unigram" else None)


def tokenizers_under_test(minilm_path):
    return {
        "wordpiece": AutoTokenizer.from_pretrained(minilm_path),
        "unigram": trained("unigram"),
        "bpe": trained("bpe"),
    }


@pytest.mark.parametrize("kind", ["wordpiece", "unigram", "bpe"])
@pytest.mark.parametrize("max_length", [8, 64, 256])
def test_prefix_ids_equal_a_full_call(minilm_path, kind, max_length):
    tokenizer = tokenizers_under_test(minilm_path)[kind]
    backend = tokenizer.backend_tokenizer
    assert word_local(backend)
    backend.enable_truncation(max_length)
    backend.no_padding()
    docs = texts()
    ours = [e.ids for e in encode_truncated(backend, docs, max_length, local=True)]
    backend.no_truncation()
    expected = tokenizer(docs, truncation=True, max_length=max_length)["input_ids"]
    assert ours == expected


def test_the_prefix_is_what_gets_tokenized(minilm_path):
    backend = AutoTokenizer.from_pretrained(minilm_path).backend_tokenizer
    backend.enable_truncation(64)
    backend.no_padding()
    seen = []

    class Recording:
        def to_str(self):
            return backend.to_str()

        def encode_batch(self, batch):
            seen.extend(len(t) for t in batch)
            return backend.encode_batch(batch)

    docs = texts()
    encode_truncated(Recording(), docs, 64, local=True)
    assert sum(seen) < 0.5 * sum(len(t) for t in docs)  # most of the characters were never tokenized


def test_tokenizers_that_are_not_word_local_fall_back():
    raw = Tokenizer(models.Unigram())  # no pre-tokenizer: the model sees the whole text at once
    assert not word_local(raw)
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    assert word_local(raw)
    raw.normalizer = normalizers.Replace("  ", " ")  # could join across the cut
    assert not word_local(raw)
    raw.normalizer = None
    raw.pre_tokenizer = pre_tokenizers.Metaspace(split=False)
    assert not word_local(raw)


def test_prefix_cuts_before_whitespace():
    assert prefix("short", 10) == "short"
    assert prefix("alpha beta gamma", 12) == "alpha beta"
    assert prefix("alpha\nbeta gamma", 7) == "alpha"
    assert prefix("x" * 50, 10) == "x" * 50  # nowhere to cut


def test_the_encoder_uses_it_and_counts_truncations(minilm_path):
    from embedkit import SentenceTransformer

    model = SentenceTransformer(minilm_path, device="cpu")
    model.max_seq_length = 32
    docs = texts(80)
    features = model.transformer.tokenize(docs)
    expected = model.tokenizer(docs, truncation=True, max_length=32)["input_ids"]
    assert features["input_ids"] == expected
    assert features["num_truncated"] == sum(len(ids) > 32 for ids in model.tokenizer(docs)["input_ids"])
