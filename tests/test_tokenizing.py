"""embedkit's truncating tokenization gives the ids of a full ``tokenizer(..., truncation=True)`` call, on
WordPiece, SentencePiece-style Unigram and byte-level BPE tokenizers: prefixes are cut only on word-local
tokenizers, and ASCII texts are normalized in Python only under character-local normalizers."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from embedkit.tokenizing import TruncatingTokenizer, prefix, word_local

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
    ours = [e.ids for e in TruncatingTokenizer(backend).encode(docs)]
    backend.no_truncation()
    expected = tokenizer(docs, truncation=True, max_length=max_length)["input_ids"]
    assert ours == expected


class Recording:
    """A tokenizer that notes the length of every text it encodes."""

    def __init__(self, tokenizer):
        self.tokenizer, self.seen = tokenizer, []

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def encode_batch_fast(self, batch):
        self.seen.extend(batch)
        return self.tokenizer.encode_batch_fast(batch)


def test_the_prefix_is_what_gets_tokenized_and_ascii_skips_the_normalizer(minilm_path):
    backend = AutoTokenizer.from_pretrained(minilm_path).backend_tokenizer
    backend.enable_truncation(64)
    backend.no_padding()
    tokenizer = TruncatingTokenizer(backend)
    tokenizer.backend, tokenizer.bare = Recording(backend), Recording(tokenizer.bare)
    docs = texts()
    tokenizer.encode(docs)
    seen = tokenizer.backend.seen + tokenizer.bare.seen
    assert sum(map(len, seen)) < 0.5 * sum(map(len, docs))  # most of the characters were never tokenized
    assert tokenizer.bare.seen and all(t.isascii() for t in tokenizer.bare.seen)
    assert all(not t.isascii() for t in tokenizer.backend.seen)
    assert len(tokenizer.bare.seen) > len(tokenizer.backend.seen)


EDGES = [
    "".join(map(chr, range(128))),  # every ASCII character: controls are dropped, \t\n\r become spaces
    "Mixed CASE with\x0bvertical\x0cform\x1cfile\x7fdel\x00nul and\ttabs\r\nlines",
    "a [MASK] token, [CLS] and [SEP] inside, and [mask] in lower case",
    "[Mask] and [UNK]ed and [PAD][PAD]",
    "Héllo wörld, ascii after" + " word" * 300,
    "x" * 5000,
    "",
]


def lowercase_wordpiece() -> PreTrainedTokenizerFast:
    """A WordPiece under a Sequence of character-local normalizers, with an added token that is normalized."""
    raw = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    raw.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()])
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[UNK]", "[CLS]", "[SEP]", "<Mask>"])
    raw.train_from_iterator(texts(60, seed=2), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", mask_token="<Mask>")
    tokenizer.add_tokens(["protein fold"])
    return tokenizer


@pytest.mark.parametrize("kind", ["wordpiece", "lowercase"])
@pytest.mark.parametrize("max_length", [16, 512])
def test_ascii_normalized_in_python_gives_the_same_ids(minilm_path, kind, max_length):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path) if kind == "wordpiece" else lowercase_wordpiece()
    backend = tokenizer.backend_tokenizer
    docs = EDGES + ["Protein Fold and <Mask> and <mask>", "protein   fold"] + texts(60)
    backend.enable_truncation(max_length)
    backend.no_padding()
    fast = TruncatingTokenizer(backend)
    assert fast.bare is not None
    ours = [e.ids for e in fast.encode(docs)]
    backend.no_truncation()
    assert ours == tokenizer(docs, truncation=True, max_length=max_length)["input_ids"]


def test_normalizers_that_are_not_character_local_keep_the_full_path():
    raw = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    assert TruncatingTokenizer(raw).bare is None  # nothing to skip
    raw.normalizer = normalizers.Sequence([normalizers.Lowercase(), normalizers.Replace("ab", "x")])
    assert TruncatingTokenizer(raw).bare is None


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
