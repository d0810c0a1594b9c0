"""Token-aware chunking: long texts are split into chunks measured in the model's own tokens, so that no
text is cut silently by the encoder. The stores (``integrations._shared.chunk_rows``) and
``embedkit.distributed`` use it.

``Chunker(encoder, chunk_tokens, chunk_overlap)``:
- ``chunk_tokens=None`` (the default): a text that fits the model is one chunk; a longer one is split
  into chunks as long as the model takes, after its passage prompt and special tokens.
- ``chunk_tokens=N``: texts longer than N tokens are split into chunks of at most N tokens.
- ``chunk_tokens=0``: no chunking; the encoder truncates long texts (and warns).
- ``chunk_overlap``: tokens that consecutive chunks share, at most (the next chunk starts at the first word
  start in that range).

Boundaries fall on word starts taken from the tokenizer's offsets, and each chunk's character span runs
to the start of the token after it, so every character of a text, whitespace included, lies in some
chunk. A chunk that starts at a word start re-tokenizes to the tokens it was measured with. Only a word
longer than a whole chunk is split between tokens; the piece that starts inside it may re-tokenize a
token or two longer (and the encoder then cuts that chunk's end, with its warning).

``plan(texts)`` tokenizes each text once, with the passage prompt and special tokens as the encoder would:
besides the spans it returns, for every text stored whole, those token ids, which an embedkit
``SentenceTransformer`` takes as they are (``encode(..., token_ids=...)``) instead of tokenizing again.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass

from tokenizers import Tokenizer

from ._encoding.tokenizing import fingerprint

Span = tuple[int, int]


@dataclass
class Plan:
    """Per text: ``spans`` (None when it is one chunk, else its chunks' character spans), and ``token_ids``,
    the encoder's input for a text stored whole (prompt and special tokens included; None where unknown)."""

    spans: list[list[Span] | None]
    token_ids: list[list[int] | None]


def piece(text: str, span: Span | None) -> str:
    """The characters of ``text`` that ``span`` covers (all of it for None)."""
    return text if span is None else text[span[0] : span[1]]


class Chunker:
    def __init__(self, encoder, chunk_tokens: int | None = None, chunk_overlap: int = 32):
        if chunk_tokens is not None and (not isinstance(chunk_tokens, int) or isinstance(chunk_tokens, bool)):
            raise TypeError(f"chunk_tokens must be None or an int, got {chunk_tokens!r}")
        if not isinstance(chunk_overlap, int) or isinstance(chunk_overlap, bool) or chunk_overlap < 0:
            raise ValueError(f"chunk_overlap must be an int >= 0, got {chunk_overlap!r}")
        if chunk_tokens is not None and chunk_tokens < 0:
            raise ValueError(f"chunk_tokens must be None, 0 (off) or a positive int, got {chunk_tokens}")
        self.tokenizer = getattr(encoder, "tokenizer", None)
        self.limit = limit = getattr(encoder, "max_seq_length", None)
        self.encoder = encoder
        self.reuse = getattr(encoder, "accepts_token_ids", False) is True  # the encoder takes plan()'s ids
        self._plain = None
        self.size = 0
        if chunk_tokens == 0 or self.tokenizer is None or not isinstance(limit, int):
            if chunk_tokens:
                raise ValueError(
                    f"chunk_tokens={chunk_tokens} needs an encoder with a tokenizer and max_seq_length "
                    f"(an embedkit SentenceTransformer); {type(encoder).__name__} has none"
                )
            return
        room = limit - self._tokens(self.prompt) - self._specials()
        if chunk_tokens is not None and chunk_tokens > room:
            raise ValueError(
                f"chunk_tokens={chunk_tokens} is more than the {room} tokens the model takes after its prompt"
            )
        self.size = chunk_tokens or room
        if chunk_overlap >= self.size:
            raise ValueError(f"chunk_overlap={chunk_overlap} must be less than the chunk size of {self.size} tokens")
        self.overlap = chunk_overlap

    @property
    def prompt(self) -> str:
        """The encoder's passage prompt, as it is now."""
        return getattr(self.encoder, "document_prompt", "") or ""

    def spans(self, texts: list[str]) -> list[list[Span] | None]:
        """Per text: None when it is one chunk, else the character spans of its chunks."""
        return self.plan(texts).spans

    def plan(self, texts: list[str]) -> Plan:
        """The spans of ``texts`` and, where the encoder takes them, the token ids of those stored whole."""
        if not self.size or not texts:
            return Plan([None] * len(texts), [None] * len(texts))
        backend = self._backend()
        if backend is None:
            return self._plan_slow(texts)
        prompt = self.prompt
        spans, token_ids = [], []
        n = len(prompt)
        for text, encoding in zip(texts, backend.encode_batch([prompt + t for t in texts], add_special_tokens=True)):
            all_offsets, ids = encoding.offsets, encoding.ids  # each read of an Encoding's field builds a list
            # the text's own tokens: not special, and ending past the prompt (offsets are into prompt + text)
            own = [
                t for t, (m, (_, end)) in enumerate(zip(encoding.special_tokens_mask, all_offsets)) if not m and end > n
            ]
            if len(own) <= self.size:
                spans.append(None)
                whole = self.reuse and len(ids) <= self.limit and not any(encoding.type_ids)
                token_ids.append(ids if whole else None)
                continue
            offsets = [(max(all_offsets[t][0] - n, 0), all_offsets[t][1] - n) for t in own]
            word_ids = encoding.word_ids
            spans.append(self._chunks(text, offsets, [word_ids[t] for t in own]))
            token_ids.append(None)
        return Plan(spans, token_ids)

    def _plan_slow(self, texts: list[str]) -> Plan:
        """Tokenizers without a ``tokenizers`` backend: the text alone, through ``transformers``."""
        encoded = self.tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        spans = []
        for i, text in enumerate(texts):
            offsets = encoded["offset_mapping"][i]
            spans.append(None if len(offsets) <= self.size else self._chunks(text, offsets, encoded.word_ids(i)))
        return Plan(spans, [None] * len(texts))

    def _chunks(self, text: str, offsets, words) -> list[Span]:
        starts = [t for t in range(len(offsets)) if t == 0 or words[t] is None or words[t] != words[t - 1]]
        return [self._span(text, offsets, a, b) for a, b in self._windows(len(offsets), starts)]

    def _backend(self):
        """A copy of the tokenizer's ``tokenizers`` backend without truncation or padding (rebuilt when the
        tokenizer changed), or None for a tokenizer without one."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None:
            return None
        key = (id(backend), fingerprint(backend))
        if self._plain is None or self._plain[0] != key:
            spec = dict(json.loads(backend.to_str()), truncation=None, padding=None)
            self._plain = key, Tokenizer.from_str(json.dumps(spec))
        return self._plain[1]

    def _windows(self, n: int, starts: list[int]) -> list[Span]:
        """Token ranges [a, b) of at most ``size`` tokens, cut at word starts where a word allows."""
        windows, a, last = [], 0, 0
        while True:
            if n - a <= self.size:
                windows.append((a, n))
                return windows
            end = a + self.size
            at = bisect.bisect_right(starts, end) - 1  # the last word start at or before end
            b = starts[at] if at >= 0 and starts[at] > max(a, last) else end  # and past the last chunk
            windows.append((a, b))
            last = b
            at = bisect.bisect_left(starts, max(b - self.overlap, a + 1))  # the overlap, to a word start
            a = starts[at] if at < len(starts) and starts[at] < b else b

    @staticmethod
    def _span(text: str, offsets, a: int, b: int) -> Span:
        start = 0 if a == 0 else offsets[a][0]
        end = len(text) if b >= len(offsets) else offsets[b][0]
        return start, end

    def _tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]) if text else 0

    def _specials(self) -> int:
        return len(self.tokenizer("", add_special_tokens=True)["input_ids"])
