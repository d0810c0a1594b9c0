"""How the stores keep chunks (the splitting itself is ``embedkit.chunking.Chunker``): a document's first
chunk is stored under its id with the whole text, chunk n >= 1 under ``id + SEP + n`` with an empty text,
its document and its character span."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from embedkit.chunking import Span, piece

logger = logging.getLogger(__name__)

SEP = "\x1f"  # joins a document id and a chunk number: the row id of a document's chunk n >= 1


@dataclass
class Rows:
    """What one write stores, a row per chunk. ``docs[i]`` is the document of a later chunk (None for a
    document's first row, stored under its id with its whole text); ``spans[i]`` is the chunk's characters
    (None for a document stored whole); ``metadata_json`` the documents' metadata as stored JSON; ``pieces`` are the
    texts to embed."""

    ids: list[str]
    texts: list[str]
    metadata_json: list[str]
    docs: list[str | None]
    spans: list[Span | None]
    pieces: list[str]
    vectors: np.ndarray | None = None
    sparse: list | None = None  # the rows' sparse vectors, in an index with a sparse leg

    def per_row(self, values: list) -> list:
        """Per row, the value of its document (``values``: one per document, in the write's order)."""
        out, n = [], -1
        for doc in self.docs:
            n += doc is None
            out.append(values[n])
        return out

    @property
    def heads(self) -> list[str]:
        """The ids of the documents written."""
        return [i for i, d in zip(self.ids, self.docs) if d is None]


def chunk_rows(ids, texts, metadatas, spans, vectors=None) -> Rows:
    if not any(spans):  # every document stored whole: a row each, as it came
        n = len(ids)
        return Rows(list(ids), list(texts), list(metadatas), [None] * n, [None] * n, list(texts), vectors)
    rows = Rows([], [], [], [], [], [], vectors)
    for doc_id, text, metadata, chunks in zip(ids, texts, metadatas, spans):
        for n, span in enumerate(chunks or [None]):
            rows.ids.append(doc_id if n == 0 else f"{doc_id}{SEP}{n}")
            rows.texts.append(text if n == 0 else "")
            rows.metadata_json.append(metadata)
            rows.docs.append(None if n == 0 else doc_id)
            rows.spans.append(span)
            rows.pieces.append(piece(text, span))
    return rows


def embed(encoder, rows: Rows, plan, given: list | None = None):
    """The vectors of ``rows`` (``chunk_rows`` of texts split by ``plan``): where ``given`` (per text: a
    vector, or None) has one for a text stored whole, that vector; every other row's piece embedded by
    ``encoder`` with the passage prompt (with the plan's token ids where the encoder takes them)."""
    owner = [t for t, chunks in enumerate(plan.spans) for _ in chunks or [None]]  # each row's text
    todo = [r for r, t in enumerate(owner) if given is None or given[t] is None or plan.spans[t] is not None]
    kwargs = {}
    if any(plan.token_ids[owner[r]] is not None for r in todo):  # only for an encoder that takes them
        kwargs["token_ids"] = [plan.token_ids[owner[r]] for r in todo]
    made = encoder.encode_document([rows.pieces[r] for r in todo], **kwargs) if todo else []
    if given is None:
        return made
    if long := sum(g is not None and s is not None for g, s in zip(given, plan.spans)):
        logger.warning(
            "%d of %d texts are longer than the model takes: each is stored as chunks embedded here (the "
            "vectors given for them, of their first tokens, are not used)",
            long,
            len(given),
        )
    vectors = [given[t] for t in owner]
    for r, vector in zip(todo, made):
        vectors[r] = vector
    return np.asarray([np.asarray(v.cpu() if hasattr(v, "cpu") else v, np.float32) for v in vectors])


def documents(hits: list) -> list:
    """Hits on rows as hits on documents, best first: a document's first (best) chunk speaks for it, under
    the document's id (the backends give a hit on a later chunk its document's text)."""
    seen, out = set(), []
    for hit in hits:
        doc_id = hit.id.split(SEP, 1)[0]
        if doc_id not in seen:
            seen.add(doc_id)
            out.append(hit if doc_id == hit.id else dataclasses.replace(hit, id=doc_id))
    return out


def deepen(hits: list, k: int, search) -> list:
    """One hit per document from ``hits``, the best ``k`` rows: a document's best chunk speaks for it.
    Where chunks of one document crowd the top ``k``, ``search(depth)`` runs again deeper, so k stays
    exact."""
    depth = k
    while len(documents(hits)) < k and len(hits) == depth:
        depth *= 4
        hits = search(depth)
    return documents(hits)[:k]
