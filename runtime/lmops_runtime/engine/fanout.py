"""Several generations of one call run together: all results or the first failure; merged streams.

Shared by both engines' ``generate_many``/``stream_many`` (a prompt list and/or ``n`` > 1 in one call).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def gather_or_cancel(awaitables: list[Awaitable[T]]) -> list[T]:
    """All results in order; the first failure fails the call and cancels the ones still running."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()


async def interleave(streams: list[Callable[[], AsyncIterator[T]]]) -> AsyncIterator[T]:
    """The items of several streams as they come. A failing stream fails the whole; leaving early (or a
    failure) cancels every stream still running."""
    queue: asyncio.Queue[T | BaseException | None] = asyncio.Queue()

    async def pump(stream: Callable[[], AsyncIterator[T]]) -> None:
        try:
            async for item in stream():
                queue.put_nowait(item)
            queue.put_nowait(None)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, which re-raises it
            queue.put_nowait(exc)

    tasks = [asyncio.ensure_future(pump(stream)) for stream in streams]
    try:
        running = len(tasks)
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
