"""How ``embedkit add`` cuts its work: documents measured in the index's chunks, long ones split into parts,
and batches (one transaction each) of about two seconds of work (``Pace``), at most ``batch_size`` chunks, so
that the progress bar moves with the work and a kill keeps every batch written before it.

A document longer than ``PART_CHUNKS`` chunks is stored as parts of at most that many chunks, each a
document of its own: ids ``ID#part-K`` and metadata ``part`` (K, from 1) and ``parts``, and in Markdown the
heading path in force where the part starts (``headings``). Parts start where a chunk starts, on a word.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from integrations._shared.hit_view import has_headings, headings_at
from integrations.cli.readers import Document

PART_CHUNKS = 128
GROUP = 512  # documents tokenized together


def measure(index, documents: list[Document]) -> list[tuple[Document, int]]:
    """Each document (or part) with the number of chunks the index stores it in (tokenized a group at a
    time, so that memory holds one group's tokens)."""
    measured = []
    for start in range(0, len(documents), GROUP):
        group = documents[start : start + GROUP]
        measured += _measure(group, index.chunker.plan([d.text for d in group]).spans, PART_CHUNKS)
    return measured


def _measure(documents: list[Document], planned, part_chunks: int) -> list[tuple[Document, int]]:
    measured = []
    for document, spans in zip(documents, planned):
        if spans is None or len(spans) <= part_chunks:
            measured.append((document, len(spans or [None])))
            continue
        starts = [0] + [spans[k][0] for k in range(part_chunks, len(spans), part_chunks)]
        ends = starts[1:] + [len(document.text)]
        markdown = has_headings(document.metadata.get("source"))
        for k, (start, end) in enumerate(zip(starts, ends), 1):
            metadata = {**document.metadata, "part": k, "parts": len(starts)}
            if markdown and (above := headings_at(document.text, start)):
                metadata["headings"] = above
            part = Document(f"{document.id}#part-{k}", document.text[start:end], metadata)
            measured.append((part, min(part_chunks, len(spans) - (k - 1) * part_chunks)))
    return measured


def batches(measured: list[tuple[Document, int]], size: Callable[[], int]) -> Iterator[tuple[list[Document], int]]:
    """Consecutive runs of documents of about ``size()`` chunks (asked anew for each batch; at most that
    many documents, and a document longer than that alone), each with its number of chunks."""
    batch, chunks = [], 0
    for document, n in measured:
        if batch and chunks + n > size():
            yield batch, chunks
            batch, chunks = [], 0
        batch.append(document)
        chunks += n
    if batch:
        yield batch, chunks


class Pace:
    """Batch sizes that make each transaction about ``SECONDS`` of work: the first is ``FIRST`` chunks, each
    next one scaled by how long the last took, never more than ``most`` chunks. So the progress bar moves and
    a Ctrl-C loses at most a few seconds of work, on a slow machine as on a fast one."""

    FIRST, SECONDS = 32, 2.0

    def __init__(self, most: int):
        self.most = most
        self.size = min(most, self.FIRST)

    def __call__(self) -> int:
        return self.size

    def took(self, chunks: int, seconds: float) -> None:
        rate = chunks / max(seconds, 1e-3)
        self.size = max(1, min(self.most, int(rate * self.SECONDS), 4 * max(chunks, 1)))  # grow 4x at most


@contextlib.contextmanager
def interruptible() -> Iterator[Callable[[], None]]:
    """Ctrl-C raises KeyboardInterrupt as usual, and is remembered: the function yielded raises it at the
    next batch boundary when it landed in a finalizer (a ``__del__``, or a weakref callback such as
    SQLAlchemy's pool returning a connection), where Python swallows it. Such a swallowed interrupt is
    not printed as a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    seen = []

    def on_sigint(signum, frame):
        seen.append(signum)
        raise KeyboardInterrupt

    def on_unraisable(unraisable) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):  # one of ours, raised again by check()
            hook(unraisable)

    def check() -> None:
        if seen:
            raise KeyboardInterrupt

    previous, hook = signal.signal(signal.SIGINT, on_sigint), sys.unraisablehook
    sys.unraisablehook = on_unraisable
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = hook
