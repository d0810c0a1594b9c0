"""Where the server's blocking work runs, and how a drain refuses what has not started.

Each index has a lane of its own for writes (one thread: adds and deletes run in arrival order) and all
indexes share a pool for reads (searches, gets, counts), so a long add holds up neither another index nor
a search. The model and the reranker run in one thread of their own. Whatever the work, the model is
called by one thread at a time (``Serialized``). Every piece of work is a future until it starts; when a
drain's deadline passes, ``refuse_waiting`` cancels those that have not started, and their requests are
answered 503 with nothing of theirs done, while work already running finishes and answers as usual.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

READERS = 4  # threads for index reads, shared by every index


class ShuttingDown(Exception):
    """The server is draining and its deadline passed before this work started."""


class Work:
    def __init__(self, indexes: list[str], registry: CollectorRegistry):
        self.model = ThreadPoolExecutor(1, thread_name_prefix="embedkit-model")
        self.reads = ThreadPoolExecutor(READERS, thread_name_prefix="embedkit-read")
        self.writes = {name: ThreadPoolExecutor(1, thread_name_prefix=f"embedkit-write-{name}") for name in indexes}
        self.model_lock = threading.Lock()
        self.pending: set[Future] = set()
        self.closing = False
        self.gauge = Gauge(
            "embedkit_work", "Pieces of work waiting for or running in a thread", ["lane", "state"], registry=registry
        )

    async def run(self, lane: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` in ``lane``'s thread: ``"model"``, ``"read"`` or the name of an index (its writes);
        ShuttingDown if the drain's deadline passes before it starts."""
        if self.closing:
            raise ShuttingDown
        executor = self.model if lane == "model" else self.reads if lane == "read" else self.writes[lane]
        waiting, running = self.gauge.labels(lane, "waiting"), self.gauge.labels(lane, "running")

        def work():
            waiting.dec()
            running.inc()
            try:
                return fn()
            finally:
                running.dec()

        def done(future: Future) -> None:
            self.pending.discard(future)
            if future.cancelled():  # never started
                waiting.dec()

        waiting.inc()
        future = executor.submit(work)
        self.pending.add(future)
        future.add_done_callback(done)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if self.closing and future.cancelled():
                raise ShuttingDown from None
            raise

    def refuse_waiting(self) -> None:
        """From now on, no work starts: what waits is cancelled (its callers get ShuttingDown)."""
        self.closing = True
        for future in list(self.pending):
            future.cancel()

    def shutdown(self) -> None:
        """Wait for the work that runs, then stop the threads."""
        for executor in (self.model, self.reads, *self.writes.values()):
            executor.shutdown(wait=True)


class Serialized:
    """A model whose ``methods`` hold ``lock`` while they run, so that the server's models run one call at
    a time whichever thread calls (an index's embeddings wait for the batcher's batch, and the reverse).
    Everything else is the model's own."""

    def __init__(self, model, lock: threading.Lock, methods: tuple[str, ...]):
        self._model, self._lock, self._methods = model, lock, methods

    def __getattr__(self, name: str):
        value = getattr(self._model, name)
        if name not in self._methods:
            return value

        def locked(*args, **kwargs):
            with self._lock:
                return value(*args, **kwargs)

        return locked
