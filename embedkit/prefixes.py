"""Tokenize only what survives truncation.

A text truncated at ``max_length`` tokens keeps only its beginning, yet a plain tokenizer call tokenizes
all of it. Where a tokenizer splits text into words before its model runs and normalizes characters
locally (``word_local``), a word's tokens depend on that word alone, so the tokens of a prefix cut at
whitespace equal the first tokens of the whole text. The prefix is then enough whenever its own tokens
overflow ``max_length``. A text whose prefix does not overflow, or that has no whitespace to cut at, is
tokenized whole, and so is every text of a tokenizer that is not word-local.
"""

from __future__ import annotations

import json

CHARS_PER_TOKEN = 6  # the prefix, in characters per kept token: English runs 4 to 5 per WordPiece token

WORD_SPLITTERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit", "ByteLevel", "Metaspace"}
FURTHER_SPLITTERS = {"Digits", "Punctuation", "UnicodeScripts"}  # they only cut words further
LOCAL_NORMALIZERS = {
    "BertNormalizer",
    "Lowercase",
    "NFC",
    "NFD",
    "NFKC",
    "NFKD",
    "StripAccents",
    "Precompiled",
    "Prepend",
}
MODELS = {"WordPiece", "BPE", "Unigram", "WordLevel"}


def word_local(backend) -> bool:
    """Whether ``backend`` (a ``tokenizers.Tokenizer``) tokenizes each whitespace-separated word alone."""
    spec = json.loads(backend.to_str())
    normalizer = spec.get("normalizer")
    normalizers = (normalizer or {}).get("normalizers") or ([normalizer] if normalizer else [])
    return (
        (spec.get("model") or {}).get("type") in MODELS
        and all(n["type"] in LOCAL_NORMALIZERS for n in normalizers)
        and _splits_words(spec.get("pre_tokenizer"))
    )


def _splits_words(part) -> bool:
    if part is None:
        return False
    if part["type"] == "Sequence":
        steps = part.get("pretokenizers") or []
        return any(_splits_words(p) for p in steps) and all(
            _splits_words(p) or p["type"] in FURTHER_SPLITTERS for p in steps
        )
    if part["type"] == "ByteLevel":
        return part.get("use_regex", True)
    if part["type"] == "Metaspace":
        return part.get("split", True)
    return part["type"] in WORD_SPLITTERS


def prefix(text: str, chars: int) -> str:
    """``text`` cut before the last whitespace at or before ``chars`` characters (the text itself when it is
    short or has no whitespace there)."""
    if len(text) <= chars:
        return text
    at = max(text.rfind(c, 0, chars + 1) for c in " \n\t\r")
    return text[:at] if at > 0 else text


def encode_truncated(backend, texts: list[str], max_length: int, local: bool) -> list:
    """``backend``'s encodings of ``texts`` (truncation at ``max_length`` already enabled on it), tokenizing
    prefixes where that gives the same ids."""
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    if not local:
        return encode(texts)
    cut = [prefix(text, max_length * CHARS_PER_TOKEN) for text in texts]
    encodings = encode(cut)
    whole = [
        i for i, (text, part, e) in enumerate(zip(texts, cut, encodings)) if part is not text and not e.overflowing
    ]
    for i, encoding in zip(whole, encode([texts[i] for i in whole]) if whole else []):
        encodings[i] = encoding
    return encodings
