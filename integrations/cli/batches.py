"""How ``embedkit add`` cuts its work: documents measured in the index's chunks, long ones split into parts,
and batches (one transaction each) of about ``batch_size`` chunks, so that the progress bar moves with the
work and a kill keeps every batch written before it.

A document longer than ``PART_CHUNKS`` chunks is stored as parts of at most that many chunks, each a
document of its own: ids ``ID#part-K`` and metadata ``part`` (K, from 1) and ``parts``, and in Markdown the
heading path in force where the part starts (``headings``). Parts start where a chunk starts, on a word.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

from integrations.cli.readers import Document, has_headings, headings_at

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


def batches(measured: list[tuple[Document, int]], batch_size: int) -> Iterator[tuple[list[Document], int]]:
    """Consecutive runs of documents of about ``batch_size`` chunks (at most ``batch_size`` documents, and
    a document longer than that alone), each with its number of chunks."""
    batch, chunks = [], 0
    for document, n in measured:
        if batch and chunks + n > batch_size:
            yield batch, chunks
            batch, chunks = [], 0
        batch.append(document)
        chunks += n
    if batch:
        yield batch, chunks


@contextlib.contextmanager
def interruptible() -> Iterator[Callable[[], None]]:
    """Ctrl-C raises KeyboardInterrupt as usual, and is remembered: the function yielded raises it at the
    next batch boundary when it landed in a ``__del__`` (where Python would swallow it and print a
    traceback) or was swallowed anyway."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    seen = []

    def on_sigint(signum, frame):
        seen.append(signum)
        if frame is None or frame.f_code.co_name != "__del__":  # in a finalizer it would be swallowed, noisily
            raise KeyboardInterrupt

    def check() -> None:
        if seen:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)
