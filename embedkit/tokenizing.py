"""Fast truncating tokenization, with ids equal to a full ``tokenizer(texts, truncation=True)`` call.

Two shortcuts, each taken only where it provably gives the same ids:

- **Prefixes.** A truncated text keeps only its beginning, yet a plain call tokenizes all of it. Where a
  tokenizer splits text into words before its model runs and normalizes characters locally
  (``word_local``), a word's tokens depend on that word alone, so the tokens of a prefix cut at whitespace
  equal the first tokens of the whole text. The prefix is enough whenever its own tokens overflow
  ``max_length``; a text whose prefix does not overflow, or that has nowhere to cut, is tokenized whole.
- **ASCII normalization.** Where the normalizer maps each character on its own (``CHAR_LOCAL``), an ASCII
  text is normalized by ``str.translate`` with a table read from the normalizer itself, and tokenized by a
  copy of the tokenizer without a normalizer: a third of the work of a WordPiece tokenizer is its
  normalizer. A text that holds an added token's content, before or after normalization, keeps the full path.
"""

from __future__ import annotations

import json
import re

from tokenizers import Tokenizer

CHARS_PER_TOKEN = 6  # the prefix, in characters per kept token: English runs 4 to 5 per WordPiece token

WORD_SPLITTERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit", "ByteLevel", "Metaspace"}
FURTHER_SPLITTERS = {"Digits", "Punctuation", "UnicodeScripts"}  # they only cut words further
CHAR_LOCAL = {"BertNormalizer", "Lowercase", "NFC", "NFD", "NFKC", "NFKD", "StripAccents"}
LOCAL_NORMALIZERS = CHAR_LOCAL | {"Precompiled", "Prepend"}  # local to a word, not to a character
MODELS = {"WordPiece", "BPE", "Unigram", "WordLevel"}


def word_local(backend) -> bool:
    """Whether ``backend`` (a ``tokenizers.Tokenizer``) tokenizes each whitespace-separated word alone."""
    spec = json.loads(backend.to_str())
    return (
        (spec.get("model") or {}).get("type") in MODELS
        and all(n["type"] in LOCAL_NORMALIZERS for n in _normalizers(spec))
        and _splits_words(spec.get("pre_tokenizer"))
    )


def _normalizers(spec) -> list[dict]:
    normalizer = spec.get("normalizer")
    return (normalizer or {}).get("normalizers") or ([normalizer] if normalizer else [])


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


class TruncatingTokenizer:
    """Encodes texts with ``backend`` (its truncation and padding already set) through both shortcuts."""

    def __init__(self, backend):
        spec = json.loads(backend.to_str())
        self.backend = backend
        self.word_local = word_local(backend)
        self.bare = self.table = self.added = None
        normalizers = _normalizers(spec)
        if normalizers and all(n["type"] in CHAR_LOCAL for n in normalizers):
            self.table = {c: backend.normalizer.normalize_str(chr(c)) for c in range(128)}
            spec.update(normalizer=None, truncation=None, padding=None)
            self.bare = Tokenizer.from_str(json.dumps(spec))
            contents = [t.content for t in backend.get_added_tokens_decoder().values()]
            self.added = re.compile("|".join(map(re.escape, contents))) if contents else None

    def encode(self, texts: list[str]) -> list:
        """The encodings of ``texts`` under the backend's truncation; prefixes are cut when it keeps the
        beginning."""
        truncation = self.backend.truncation
        if not self.word_local or truncation is None or truncation["direction"] != "right":
            return self._encode(texts)
        cut = [prefix(text, truncation["max_length"] * CHARS_PER_TOKEN) for text in texts]
        encodings = self._encode(cut)
        whole = [
            i for i, (text, part, e) in enumerate(zip(texts, cut, encodings)) if part is not text and not e.overflowing
        ]
        for i, encoding in zip(whole, self._encode([texts[i] for i in whole]) if whole else []):
            encodings[i] = encoding
        return encodings

    def _encode(self, texts: list[str]) -> list:
        full = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)
        if self.bare is None:
            return full(texts)
        normalized = [t.translate(self.table) if t.isascii() else None for t in texts]
        if self.added is not None:
            for i, (text, norm) in enumerate(zip(texts, normalized)):
                if norm is not None and (self.added.search(text) or self.added.search(norm)):
                    normalized[i] = None
        fast = [i for i, norm in enumerate(normalized) if norm is not None]
        slow = [i for i, norm in enumerate(normalized) if norm is None]
        truncation = self.backend.truncation
        if truncation is None:
            self.bare.no_truncation()
        elif self.bare.truncation != truncation:
            self.bare.enable_truncation(**truncation)
        encodings = [None] * len(texts)
        for indices, encoded in (
            (fast, self.bare.encode_batch_fast([normalized[i] for i in fast]) if fast else []),
            (slow, full([texts[i] for i in slow]) if slow else []),
        ):
            for i, encoding in zip(indices, encoded):
                encodings[i] = encoding
        return encodings
