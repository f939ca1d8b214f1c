"""Coalescing a token stream: tokens produced close together leave the replica as one chunk.

Every streamed chunk is a message through Ray Serve twice (ModelServer to Router, Router to the HTTP proxy),
which costs far more than decoding a token on a GPU; Ray Serve LLM batches its stream for the same reason.
The first chunk is never held (time to first token is unchanged); later ones wait at most the interval, or
until the next token arrives, whichever is later. Merged chunks concatenate their text and lists and keep
the latest value of everything else (finish reason, token counts).

What a message costs is CPU in the replica, the Router and the proxy, whatever it carries, so with many
streams open at once a fixed interval would make that cost grow with the streams. A replica's streams
therefore share a budget of chunks per second (``StreamPacer``): each stream's window is the larger of its
interval and (streams open) / budget, so a lone stream keeps its interval and thirty-two of them together
send no more messages than the budget. An interval of 0 (every token alone) is left as it is.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, TypeVar

from pydantic import BaseModel

C = TypeVar("C", bound=BaseModel)


def merge_chunks(first: C, second: C) -> C:
    """One chunk carrying both: strings and lists concatenated, other fields from ``second`` when set."""
    merged: dict[str, Any] = {}
    for name in type(first).model_fields:
        a, b = getattr(first, name), getattr(second, name)
        if isinstance(a, str) and isinstance(b, str):
            merged[name] = a + b
        elif isinstance(a, list) and isinstance(b, list):
            merged[name] = [*a, *b]
        else:
            merged[name] = b if b is not None else a
    return type(first).model_validate(merged)


class StreamPacer:
    """One replica's open streams, which share its budget of chunks per second."""

    def __init__(self) -> None:
        self.open = 0

    def window(self, interval_s: float, chunks_per_s: int) -> float:
        """A stream's window now: its own interval, widened while the open streams would exceed the budget
        (0: no budget). An interval of 0 asks for every token alone and gets it, budget or not."""
        if interval_s <= 0 or chunks_per_s <= 0:
            return interval_s
        return max(interval_s, self.open / chunks_per_s)


async def coalesce_chunks(
    chunks: AsyncGenerator[C],
    interval_s: float,
    pacer: StreamPacer | None = None,
    chunks_per_s: int = 0,
) -> AsyncGenerator[C]:
    """Yield ``chunks`` merged so that at most one goes out per window: ``interval_s`` (0 passes every
    chunk), or wider while ``pacer``'s streams would send more than ``chunks_per_s`` together.

    Closing this stream closes ``chunks`` at once, so a client that leaves frees its generation slot.
    """
    pacer = pacer or StreamPacer()
    pending: C | None = None
    last_sent = float("-inf")
    pacer.open += 1
    try:
        async with aclosing(chunks):
            async for chunk in chunks:
                pending = chunk if pending is None else merge_chunks(pending, chunk)
                now = time.monotonic()
                if now - last_sent >= pacer.window(interval_s, chunks_per_s):
                    yield pending
                    pending, last_sent = None, now
    finally:
        pacer.open -= 1
    if pending is not None:
        yield pending
