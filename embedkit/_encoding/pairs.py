"""Fast tokenization of (query, passage) pairs, with ids equal to ``tokenizer(a, b, truncation=True)``.

A pair is cut to ``max_length`` tokens by ``longest_first`` truncation, which keeps at most ``budget``
(``max_length`` less the special tokens) content tokens: the shorter side whole and the longer cut to the
rest, or, where both are long, half each (the odd token to the longer side). Where a tokenizer tokenizes
each whitespace-separated word alone (``tokenizing.word_local``), a text's beginning cut at whitespace
tokenizes to the first tokens of the whole text; so each side is tokenized only as far as ``max_length``
tokens, and the tokenizer's own ``post_process`` truncates the pair and adds its special tokens as a full
call does. That gives the same result whenever the beginnings tell which side is longer: always when one
side is whole and within the budget (a query, typically); when both sides are cut and the budget is even;
otherwise the cut sides are tokenized whole. Any other tokenizer takes one plain call.
"""

from __future__ import annotations

import json

from tokenizers import Tokenizer

from .tokenizing import FIRST_CHARS_PER_TOKEN, Tokens, cut, fingerprint, word_local


class PairTokenizer:
    """Tokenizes pairs with ``backend`` (a ``tokenizers.Tokenizer``) up to ``max_length`` tokens."""

    def __init__(self, backend, max_length: int):
        spec = json.loads(backend.to_str())
        self.max_length, self.fingerprint = max_length, fingerprint(backend)
        self.plain = Tokenizer.from_str(json.dumps(dict(spec, truncation=None, padding=None)))
        self.cutting = Tokenizer.from_str(json.dumps(dict(spec, padding=None)))
        self.cutting.enable_truncation(max_length, strategy="longest_first", direction="right")
        added = list(backend.get_added_tokens_decoder().values())
        spans_words = any(t.rstrip or any(c.isspace() for c in t.content) for t in added)
        self.prefixes = word_local(backend) and not spans_words

    def stale(self, backend) -> bool:
        return fingerprint(backend) != self.fingerprint

    def encode(self, pairs: list[tuple[str, str]]) -> Tokens:
        if not self.prefixes:
            encodings = self.cutting.encode_batch(pairs)
        else:
            firsts, first_whole = self._beginnings([a for a, _ in pairs])
            seconds, second_whole = self._beginnings([b for _, b in pairs])
            budget = self.max_length - self.cutting.num_special_tokens_to_add(True)
            for i, (a, b, a_whole, b_whole) in enumerate(zip(firsts, seconds, first_whole, second_whole)):
                if self._unclear(len(a.ids), a_whole, len(b.ids), b_whole, budget):
                    firsts[i], seconds[i] = self.plain.encode_batch_fast(list(pairs[i]), add_special_tokens=False)
            encodings = [self.cutting.post_process(a, b) for a, b in zip(firsts, seconds)]
        truncated = sum(1 for e in encodings if e.overflowing)
        return Tokens([e.ids for e in encodings], [e.type_ids for e in encodings], truncated)

    @staticmethod
    def _unclear(a: int, a_whole: bool, b: int, b_whole: bool, budget: int) -> bool:
        """Whether beginnings of ``a`` and ``b`` tokens (whole texts or not) leave the truncation open: a cut
        side holds more than ``budget`` tokens, so only which side is longer can matter."""
        if a_whole and b_whole:
            return False
        if a_whole or b_whole:
            return (a if a_whole else b) > budget  # a whole side within the budget is the shorter one
        return budget % 2 == 1  # both long: half each, the odd token to the longer

    def _beginnings(self, texts: list[str]) -> tuple[list, list[bool]]:
        """Encodings (no special tokens) of each text's beginning, holding at least ``max_length`` tokens or
        the whole text, and whether each is the whole text."""
        chars = int(self.max_length * FIRST_CHARS_PER_TOKEN * 2)
        stops = [cut(text, 0, chars) for text in texts]
        encodings = self.plain.encode_batch_fast([t[:s] for t, s in zip(texts, stops)], add_special_tokens=False)
        whole = [s >= len(t) for t, s in zip(texts, stops)]
        short = [i for i, e in enumerate(encodings) if not whole[i] and len(e.ids) < self.max_length]
        for i, e in zip(short, self.plain.encode_batch_fast([texts[i] for i in short], add_special_tokens=False)):
            encodings[i], whole[i] = e, True
        return encodings, whole
