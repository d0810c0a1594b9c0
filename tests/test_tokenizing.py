"""embedkit's truncating tokenization gives the ids of a full ``tokenizer(..., truncation=True)`` call, on
WordPiece, SentencePiece-style Unigram and byte-level BPE tokenizers: texts are tokenized a piece at a time
only on word-local tokenizers, and ASCII texts are normalized in Python only under character-local
normalizers."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from embedkit._encoding.tokenizing import TruncatingTokenizer, cut, word_local

CORPUS = pathlib.Path(__file__).resolve().parents[1] / "integrations" / "cli" / "demo_corpus.jsonl"


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
    ours = TruncatingTokenizer(backend).encode(docs).ids
    backend.no_truncation()
    expected = tokenizer(docs, truncation=True, max_length=max_length)["input_ids"]
    assert ours == expected


class Recording:
    """A tokenizer that notes the length of every text it encodes."""

    def __init__(self, tokenizer):
        self.tokenizer, self.seen = tokenizer, []

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def encode_batch_fast(self, batch, **kwargs):
        self.seen.extend(batch)
        return self.tokenizer.encode_batch_fast(batch, **kwargs)


def test_the_prefix_is_what_gets_tokenized_and_ascii_skips_the_normalizer(minilm_path):
    backend = AutoTokenizer.from_pretrained(minilm_path).backend_tokenizer
    backend.enable_truncation(64)
    backend.no_padding()
    tokenizer = TruncatingTokenizer(backend)
    tokenizer.plain, tokenizer.bare = Recording(tokenizer.plain), Recording(tokenizer.bare)
    docs = texts()
    tokenizer.encode(docs)
    seen = tokenizer.plain.seen + tokenizer.bare.seen
    assert sum(map(len, seen)) < 0.5 * sum(map(len, docs))  # most of the characters were never tokenized
    assert tokenizer.bare.seen and all(t.isascii() for t in tokenizer.bare.seen)
    assert all(not t.isascii() for t in tokenizer.plain.seen)
    assert len(tokenizer.bare.seen) > len(tokenizer.plain.seen)


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
    ours = fast.encode(docs).ids
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


def test_pieces_end_before_whitespace():
    assert cut("short", 0, 10) == 5
    assert cut("alpha beta gamma", 0, 12) == len("alpha beta")
    assert cut("alpha\nbeta gamma", 0, 7) == len("alpha")
    assert cut("alpha beta gamma delta", 5, 8) == len("alpha beta")  # a later piece: from its start
    assert cut("x" * 50, 0, 10) == 50  # nowhere to cut: the rest of the text


def prepending() -> PreTrainedTokenizerFast:
    """A normalizer that prepends to whatever it is given: pieces after the first would tokenize differently."""
    raw = Tokenizer(models.WordLevel({"[UNK]": 0, "xa": 1, "b": 2, "xb": 3, "a": 4}, unk_token="[UNK]"))
    raw.normalizer = normalizers.Prepend("x")
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")


def test_a_prepending_normalizer_tokenizes_short_first_pieces_whole():
    tokenizer = prepending()
    backend = tokenizer.backend_tokenizer
    docs = ["a b " * n + "b" for n in range(1, 40)] + ["b" * 30 + " a"]
    backend.enable_truncation(6)
    fast = TruncatingTokenizer(backend)
    assert fast.pieces and not fast.continues
    ours = fast.encode(docs).ids
    backend.no_truncation()
    assert ours == tokenizer(docs, truncation=True, max_length=6)["input_ids"]
    assert ours[0][0] == 1  # "xa": the prepended text's first word


def test_a_changed_tokenizer_is_noticed(minilm_path):
    from embedkit import SentenceTransformer

    model = SentenceTransformer(minilm_path, device="cpu")
    docs = ["the protein fold of Protein Folds", "plain words"]
    model.transformer.tokenize(docs)
    model.tokenizer.add_tokens(["protein fold"])
    expected = model.tokenizer(docs, truncation=True, max_length=model.max_seq_length)["input_ids"]
    assert model.tokenizer.convert_tokens_to_ids("protein fold") in expected[0]  # the change matters
    assert model.transformer.tokenize(docs)["input_ids"] == expected


def test_the_encoder_uses_it_and_counts_truncations(minilm_path):
    from embedkit import SentenceTransformer

    model = SentenceTransformer(minilm_path, device="cpu")
    model.max_seq_length = 32
    docs = texts(80)
    features = model.transformer.tokenize(docs)
    expected = model.tokenizer(docs, truncation=True, max_length=32)["input_ids"]
    assert features["input_ids"] == expected
    assert features["num_truncated"] == sum(len(ids) > 32 for ids in model.tokenizer(docs)["input_ids"])


def test_added_tokens_that_could_span_a_cut_take_the_plain_path(minilm_path):
    """An added token with whitespace inside, or one that swallows the whitespace after it, is matched on the
    whole text: pieces are not cut for such tokenizers, and the ids still equal a full call."""
    from tokenizers import AddedToken

    for token in ["protein fold", AddedToken("<m>", rstrip=True)]:
        tokenizer = AutoTokenizer.from_pretrained(minilm_path)
        assert TruncatingTokenizer(tokenizer.backend_tokenizer).pieces
        tokenizer.add_tokens([token])
        backend = tokenizer.backend_tokenizer
        backend.enable_truncation(16)
        backend.no_padding()
        fast = TruncatingTokenizer(backend)
        assert not fast.pieces
        docs = [" ".join(["the protein fold <m> of"] * n) for n in range(1, 30)]
        ours = fast.encode(docs).ids
        backend.no_truncation()
        assert ours == tokenizer(docs, truncation=True, max_length=16)["input_ids"]
