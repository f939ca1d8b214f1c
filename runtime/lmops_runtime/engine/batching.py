"""A small asyncio micro-batcher: concurrent callers' items are run together in one function call.

It has ``@serve.batch``'s semantics (up to ``max_batch_size`` items, waiting at most ``batch_wait_timeout_s``
after the first) but works outside a Serve replica too (``serve.batch`` insists on a replica context), so the
engine is the same in unit tests, benchmarks and Serve.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from lmops_runtime.config import BatchingConfig

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Runs ``run_batch`` on lists of submitted items, one batch at a time, in submission order."""

    def __init__(self, run_batch: Callable[[list[T]], Awaitable[list[R]]], config: BatchingConfig) -> None:
        self._run_batch = run_batch
        self._max = config.max_batch_size
        self._wait = config.batch_wait_timeout_s
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._worker_loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        # A worker belongs to one event loop; a new loop (tests, a restarted replica loop) gets its own.
        if (
            self._queue is None
            or self._worker is None
            or self._worker.done()
            or self._worker_loop is not loop
        ):
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._loop(self._queue))
            self._worker_loop = loop
        future: asyncio.Future[R] = loop.create_future()
        await self._queue.put((item, future))
        return await future

    async def _loop(self, queue: asyncio.Queue[tuple[T, asyncio.Future[R]]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self._wait
            while len(batch) < self._max:
                remaining = deadline - loop.time()
                if remaining <= 0 and queue.empty():
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), max(remaining, 0)))
                except TimeoutError:
                    break
            live = [(item, future) for item, future in batch if not future.cancelled()]
            if not live:
                continue
            try:
                results = await self._run_batch([item for item, _ in live])
            except Exception as error:
                for _, future in live:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(result)

    @property
    def waiting(self) -> int:
        """Items submitted but not yet taken into a batch (this batcher's queue length)."""
        return 0 if self._queue is None else self._queue.qsize()

    def close(self) -> None:
        if self._worker is not None and self._worker_loop is not None and not self._worker_loop.is_closed():
            self._worker_loop.call_soon_threadsafe(self._worker.cancel)
