"""Dynamic batching: the sequences of concurrent requests scored together, on one worker thread.

A request is first admitted (:meth:`Batcher.admit`): the queue holds at most ``max_queue`` sequences waiting or
being scored, and a request that would pass that is refused at once (:class:`QueueFull`, HTTP 503), before any
work is spent on it. Its sequences are then encoded (in a thread, off the event loop) and queued as one job. The
batching task takes jobs in arrival order into a batch until the batch holds ``batch_tokens`` tokens or the
oldest job has waited ``max_wait`` seconds, and hands the batch to the worker thread, which scores it with the
project's scorer (length-sorted padded micro-batches under the same token budget:
:func:`skyrm.eval.runner.score_sequences`). A job is never split between batches, and each job gets back
exactly the scores of its own sequences, in its order. While the worker runs, new jobs queue; when it is done,
jobs that have waited their ``max_wait`` go at once. A job whose request was cancelled (its client went away)
leaves the queue unscored.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

__all__ = ["Batcher", "QueueFull"]


class QueueFull(Exception):
    """The queue cannot take a request's sequences now (HTTP 503: try again later)."""


@dataclass
class _Job:
    sequences: list[list[int]]
    future: asyncio.Future
    tokens: int
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """Coalesces jobs into batches for ``score`` (sequences -> one float each), run on one worker thread;
    ``on_batch(sequences, tokens, seconds)`` is told of every batch scored."""

    def __init__(self, score: Callable[[list[list[int]]], list[float]], batch_tokens: int, max_wait: float,
                 max_queue: int, on_batch: Callable[[int, int, float], None] | None = None) -> None:  # fmt: skip
        self.score, self.batch_tokens, self.max_wait, self.max_queue = score, batch_tokens, max_wait, max_queue
        self.on_batch = on_batch or (lambda sequences, tokens, seconds: None)
        self.pending = 0  # sequences admitted and not yet answered
        self._jobs: deque[_Job] = deque()
        self._queued_tokens = 0  # the tokens of the jobs in the queue
        self._arrival = asyncio.Event()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="skyrm-serve-forward")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="skyrm-serve-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in self._jobs:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._worker.shutdown(wait=True)

    def admit(self, sequences: int) -> None:
        """Reserves room for ``sequences`` or raises :class:`QueueFull`; :meth:`scores` gives the room back."""
        if self.pending + sequences > self.max_queue:
            raise QueueFull(f"the queue is full ({self.pending} of {self.max_queue} sequences waiting or being "
                            f"scored; this request has {sequences}): try again shortly")  # fmt: skip
        self.pending += sequences

    async def scores(self, sequences: int, encode: Callable[[], list[list[int]]]) -> list[float]:
        """The scores of the ``sequences`` that ``encode()`` returns (run in a thread), once admitted
        (:meth:`admit`); the room is given back when they are answered or fail."""
        try:
            encoded = await asyncio.to_thread(encode)
            if len(encoded) != sequences:
                raise ValueError(f"{sequences} sequences admitted, {len(encoded)} encoded")
            if not encoded:
                return []
            job = _Job(encoded, asyncio.get_running_loop().create_future(), sum(len(s) for s in encoded))
            self._jobs.append(job)
            self._queued_tokens += job.tokens
            self._arrival.set()
            return await job.future
        finally:
            self.pending -= sequences

    def _drop_abandoned(self) -> None:
        """Jobs whose request was cancelled (its client went away) leave the queue unscored."""
        if any(job.future.cancelled() for job in self._jobs):
            self._queued_tokens -= sum(job.tokens for job in self._jobs if job.future.cancelled())
            self._jobs = deque(job for job in self._jobs if not job.future.cancelled())

    async def _next_batch(self) -> list[_Job]:
        """The jobs of the next batch: those that fit ``batch_tokens`` (at least one), once the batch is full or
        its oldest job has waited ``max_wait``; abandoned jobs are dropped, never scored."""
        while True:
            self._drop_abandoned()
            while not self._jobs:
                self._arrival.clear()
                await self._arrival.wait()
                self._drop_abandoned()
            deadline = self._jobs[0].arrived + self.max_wait
            while self._queued_tokens < self.batch_tokens and (left := deadline - time.monotonic()) > 0:
                self._arrival.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrival.wait(), left)
            self._drop_abandoned()
            if self._jobs:
                break
        batch = [self._jobs.popleft()]
        tokens = batch[0].tokens
        while self._jobs and tokens + self._jobs[0].tokens <= self.batch_tokens:
            tokens += self._jobs[0].tokens
            batch.append(self._jobs.popleft())
        self._queued_tokens -= tokens
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            sequences = [s for job in batch for s in job.sequences]
            start = time.perf_counter()
            try:
                values = await loop.run_in_executor(self._worker, self.score, sequences)
            except Exception as e:  # the batch's requests fail (HTTP 500); the server goes on
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(e)
                continue
            self.on_batch(len(sequences), sum(len(s) for s in sequences), time.perf_counter() - start)
            at = 0
            for job in batch:
                mine = values[at : at + len(job.sequences)]
                at += len(job.sequences)
                if not job.future.done():  # a request whose client went away is cancelled: nothing to answer
                    job.future.set_result(mine)
