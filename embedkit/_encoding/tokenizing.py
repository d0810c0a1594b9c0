"""Fast truncating tokenization, with ids equal to a full ``tokenizer(texts, truncation=True)`` call.

Two shortcuts, each taken only where it provably gives the same ids:

- **Only what survives truncation.** A truncated text keeps only its beginning, yet a plain call tokenizes
  all of it. Where a tokenizer splits text into words before its model runs and normalizes characters
  locally (``word_local``), a word's tokens depend on that word alone, so pieces of a text cut at whitespace
  tokenize to consecutive runs of the whole text's tokens. A text is tokenized a piece at a time, from its
  beginning, until the kept tokens are known; the special tokens are then put around them as the
  tokenizer's post-processor does. Where pieces after the first would differ (a ``Prepend`` normalizer), a
  text whose first piece falls short is tokenized whole instead.
- **ASCII normalization.** Where the normalizer maps each character on its own (``CHAR_LOCAL``), an ASCII
  text is normalized by ``str.translate`` with a table read from the normalizer itself, and tokenized by a
  copy of the tokenizer without a normalizer: a third of the work of a WordPiece tokenizer is its
  normalizer. A text that holds an added token's content, before or after normalization, keeps the full path.

Any other tokenizer, or truncation from the left, takes one plain call.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from tokenizers import Tokenizer

CHARS_PER_TOKEN = 6  # a piece, in characters per token still wanted: English runs 4 to 5 per WordPiece token
FIRST_CHARS_PER_TOKEN = 4.5  # the first piece: a shortfall costs only another piece

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


def cut(text: str, start: int, chars: int) -> int:
    """Where a piece of ``text`` from ``start`` of about ``chars`` characters ends: before the last whitespace
    in reach, or at the end of the text when it is within reach or there is no whitespace to cut at."""
    end = start + chars
    if end >= len(text):
        return len(text)
    at = max(text.rfind(c, start + 1, end + 1) for c in " \n\t\r")
    return at if at > 0 else len(text)


@dataclass
class Tokens:
    """Tokenizer output, unpadded: ids and type ids per text (None where every type id is 0), and how many
    texts were cut."""

    ids: list[list[int]]
    type_ids: list[list[int]] | None
    truncated: int


class TruncatingTokenizer:
    """Tokenizes with ``backend`` (a ``tokenizers.Tokenizer``, its truncation set) through the shortcuts.
    ``stale()`` says when the backend was changed since (tokens added, parts replaced)."""

    def __init__(self, backend):
        spec = json.loads(backend.to_str())
        self.backend, self.fingerprint = backend, fingerprint(backend)
        plain = dict(spec, truncation=None, padding=None)
        self.plain = Tokenizer.from_str(json.dumps(plain))
        try:
            self.template = self._template()
        except Exception:  # noqa: BLE001 - a tokenizer that cannot encode the probes takes the plain path
            self.template = None
        added = list(backend.get_added_tokens_decoder().values())
        # An added token is found in the whole text before words are split: one holding whitespace could span
        # a cut, and one that swallows the whitespace after it (rstrip) would see a piece end instead.
        spans_words = any(t.rstrip or any(c.isspace() for c in t.content) for t in added)
        self.pieces = word_local(backend) and self.template is not None and not spans_words
        self.continues = "Prepend" not in {n["type"] for n in _normalizers(spec)}
        self.bare = self.table = self.added = None
        normalizers = _normalizers(spec)
        if normalizers and all(n["type"] in CHAR_LOCAL for n in normalizers):
            self.table = {c: backend.normalizer.normalize_str(chr(c)) for c in range(128)}
            self.bare = Tokenizer.from_str(json.dumps(dict(plain, normalizer=None)))
            contents = [t.content for t in added]
            self.added = re.compile("|".join(map(re.escape, contents))) if contents else None

    def stale(self) -> bool:
        return fingerprint(self.backend) != self.fingerprint

    def encode(self, texts: list[str]) -> Tokens:
        truncation = self.backend.truncation
        if (
            not self.pieces
            or truncation is None
            or truncation["direction"] != "right"
            or truncation["strategy"] not in ("longest_first", "only_first")
        ):
            encodings = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)(texts)
            return Tokens(
                [e.ids for e in encodings], [e.type_ids for e in encodings], sum(1 for e in encodings if e.overflowing)
            )
        return self._by_pieces(texts, truncation["max_length"])

    def _by_pieces(self, texts: list[str], max_length: int) -> Tokens:
        head, head_types, content_type, tail, tail_types = self.template
        keep = max(0, max_length - len(head) - len(tail))  # content tokens kept
        parts: list[list[list[int]]] = [[] for _ in texts]
        counts, ends = [0] * len(texts), [0] * len(texts)
        todo, chars = list(range(len(texts))), [int(keep * FIRST_CHARS_PER_TOKEN)] * len(texts)
        while todo:
            starts = [ends[i] if self.continues else 0 for i in todo]
            stops = [cut(texts[i], start, chars[i]) for i, start in zip(todo, starts)]
            encoded = self._plain([texts[i][a:b] for i, a, b in zip(todo, starts, stops)])
            left = []
            for i, stop, encoding in zip(todo, stops, encoded):
                if self.continues:
                    parts[i].append(encoding.ids)
                    counts[i] += len(encoding.ids)
                else:
                    parts[i], counts[i] = [encoding.ids], len(encoding.ids)
                ends[i] = stop
                if counts[i] <= keep and stop < len(texts[i]):
                    chars[i] = (keep + 1 - counts[i]) * CHARS_PER_TOKEN if self.continues else len(texts[i])
                    left.append(i)
            todo = left
        ids = [head + (p[0] if len(p) == 1 else [t for piece in p for t in piece])[:keep] + tail for p in parts]
        type_ids = None
        if any(head_types) or content_type or any(tail_types):
            type_ids = [head_types + [content_type] * (len(i) - len(head) - len(tail)) + tail_types for i in ids]
        return Tokens(ids, type_ids, sum(count > keep for count in counts))

    def _template(self):
        """(head ids, head type ids, content type id, tail ids, tail type ids) that the post-processor puts
        around a single text, or None when it does anything else."""
        found, types = set(), set()
        for text in ("a b c", "d"):
            content = self.plain.encode(text, add_special_tokens=False)
            full = self.plain.post_process(content)
            ids, n = full.ids, len(content.ids)
            at = next((i for i in range(len(ids) - n + 1) if ids[i : i + n] == content.ids), None)
            if not n or at is None:
                return None
            types.update(full.type_ids[at : at + n])
            found.add((*map(tuple, (ids[:at], full.type_ids[:at], ids[at + n :], full.type_ids[at + n :])),))
        empty = self.plain.post_process(self.plain.encode("", add_special_tokens=False))
        if len(found) != 1 or len(types) != 1:
            return None
        head, head_types, tail, tail_types = map(list, found.pop())
        if (empty.ids, empty.type_ids) != (head + tail, head_types + tail_types):
            return None
        return head, head_types, types.pop(), tail, tail_types

    def _plain(self, texts: list[str]) -> list:
        """Encodings of ``texts`` without special tokens or truncation, through the ASCII shortcut."""
        if self.bare is None:
            return self.plain.encode_batch_fast(texts, add_special_tokens=False)
        normalized = [t.translate(self.table) if t.isascii() else None for t in texts]
        if self.added is not None:
            for i, (text, norm) in enumerate(zip(texts, normalized)):
                if norm is not None and (self.added.search(text) or self.added.search(norm)):
                    normalized[i] = None
        fast = [i for i, norm in enumerate(normalized) if norm is not None]
        slow = [i for i, norm in enumerate(normalized) if norm is None]
        encodings = [None] * len(texts)
        for indices, tokenizer, batch in (
            (fast, self.bare, [normalized[i] for i in fast]),
            (slow, self.plain, [texts[i] for i in slow]),
        ):
            for i, encoding in zip(
                indices, tokenizer.encode_batch_fast(batch, add_special_tokens=False) if batch else []
            ):
                encodings[i] = encoding
        return encodings


def fingerprint(backend) -> tuple:
    parts = (backend.normalizer, backend.pre_tokenizer, backend.post_processor)
    return (backend.get_vocab_size(with_added_tokens=True), *(p and p.__getstate__() for p in parts))
