"""What an index returns: a stored document (Record) and a search result (Hit)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedkit.chunking import piece
from integrations._shared.passages import highlights


@dataclass
class Record:
    """A stored document; ``vector`` (its normalized embedding) and, in an index with a sparse leg,
    ``sparse_vector`` ({dimension: weight}) are set only when asked for."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: np.ndarray | None = field(default=None, kw_only=True, compare=False, repr=False)
    sparse_vector: dict[int, float] | None = field(default=None, kw_only=True, compare=False, repr=False)


@dataclass
class Hit(Record):
    """A search result, best first. ``score``: the cosine similarity to the query (vector search), the
    keyword relevance (keyword search), the sparse dot product (sparse search) or the fused score (hybrid
    search); higher is better. ``ranks``:
    the hit's rank in each leg or stage that found it (``{"vector": 1, "keyword": 4}``; set in hybrid mode
    and with a rerank stage, which adds ``"rerank"``). ``scores``: with a rerank stage, the first stage's
    score under its mode's name and the reranker's under ``"rerank"``. ``query``: the query text, set by ``search``."""

    score: float = 0.0
    span: tuple[int, int] | None = field(default=None, kw_only=True, compare=False)
    ranks: dict[str, int] | None = field(default=None, kw_only=True, compare=False)
    scores: dict[str, float] | None = field(default=None, kw_only=True, compare=False)
    query: str | None = field(default=None, kw_only=True, compare=False, repr=False)

    @property
    def passage(self) -> str:
        """The text of the best chunk (``text[span]``: for a keyword hit, the chunk that matches the query
        best), or the whole text of a document stored whole."""
        return piece(self.text, self.span)

    @property
    def highlights(self) -> list[tuple[int, int]]:
        """The (start, end) character ranges of ``passage`` where the words and phrases of ``query`` match, as
        the keyword index matches them (none without a query; see ``integrations._shared.passages``)."""
        if not self.query:
            return []
        key = (self.query, self.span, id(self.text))
        if self.__dict__.get("_highlights", (None,))[0] != key:  # found once per hit (its JSON reads them twice)
            self.__dict__["_highlights"] = key, highlights(self.passage, self.query)
        return list(self.__dict__["_highlights"][1])
