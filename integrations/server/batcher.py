"""Batching across requests: the texts of concurrent requests go through the model together.

Requests wait in a bounded queue. The batcher takes the oldest, adds every waiting request that shares
its options (prompt, dimensions, normalization) while the batch stays within ``max_batch_tokens``, waiting
up to ``max_wait_ms`` for more when the batch is not full, then runs one ``encode`` in the model's thread
and hands each request its own rows, in order. While the model works, new requests queue up for the next
batch. A request whose client went away is dropped before it is encoded. ``max_batch_tokens=0`` turns
cross-request batching off: each request is a batch of its own.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests; the caller answers 503."""


@dataclass
class Job:
    options: tuple
    items: list  # one per text: what ``encode`` takes
    tokens: int
    future: asyncio.Future = field(repr=False)


class Batcher:
    def __init__(
        self,
        encode: Callable[[tuple, list], np.ndarray],
        executor: Executor,
        max_batch_tokens: int,
        max_wait_ms: float,
        max_queue: int,
        observe: Callable[[int, int, int], None] = lambda texts, tokens, depth: None,
    ):
        self.encode, self.executor = encode, executor
        self.max_batch_tokens, self.max_wait, self.max_queue = max_batch_tokens, max_wait_ms / 1000, max_queue
        self.observe = observe  # (texts in a batch, its tokens, queue depth) for the metrics
        self.waiting: collections.deque[Job] = collections.deque()
        self.arrived = asyncio.Event()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        while self.waiting:
            await asyncio.sleep(0.01)
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def refuse(self, error: type[Exception]) -> None:
        """Answer every waiting request with ``error()``: they never reach the model."""
        while self.waiting:
            job = self.waiting.popleft()
            if not job.future.done():
                job.future.set_exception(error())

    async def embed(self, options: tuple, items: list, tokens: int) -> np.ndarray:
        """The rows of ``items`` (one per text), encoded with ``options`` in some batch; QueueFull if the
        queue is full."""
        if len(self.waiting) >= self.max_queue:
            raise QueueFull(f"the queue holds {self.max_queue} requests")
        job = Job(options, items, tokens, asyncio.get_running_loop().create_future())
        self.waiting.append(job)
        self.arrived.set()
        return await job.future

    async def _run(self) -> None:
        while True:
            await self.arrived.wait()
            self.arrived.clear()
            while self.waiting:
                batch = await self._collect()
                if batch:
                    await self._encode(batch)

    async def _collect(self) -> list[Job]:
        first = self._next()
        if first is None:
            return []
        batch, tokens = [first], first.tokens
        if self.max_batch_tokens <= 0:
            return batch
        deadline = time.monotonic() + self.max_wait
        while True:
            for job in list(self.waiting):
                if job.future.done():
                    self.waiting.remove(job)
                elif job.options == first.options and tokens + job.tokens <= self.max_batch_tokens:
                    self.waiting.remove(job)
                    batch.append(job)
                    tokens += job.tokens
            remaining = deadline - time.monotonic()
            if tokens >= self.max_batch_tokens or remaining <= 0:
                return batch
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def _next(self) -> Job | None:
        while self.waiting:
            job = self.waiting.popleft()
            if not job.future.done():  # not cancelled by a client that went away
                return job
        return None

    async def _encode(self, batch: list[Job]) -> None:
        items = [item for job in batch for item in job.items]
        self.observe(len(items), sum(job.tokens for job in batch), len(self.waiting))
        try:
            rows = await asyncio.get_running_loop().run_in_executor(self.executor, self.encode, batch[0].options, items)
        except Exception as exc:  # every request of the batch gets the model's error
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        at = 0
        for job in batch:
            if not job.future.done():
                job.future.set_result(rows[at : at + len(job.items)])
            at += len(job.items)
