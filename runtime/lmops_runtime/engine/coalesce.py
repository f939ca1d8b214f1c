"""Coalescing a token stream: tokens produced close together leave the replica as one chunk.

Every streamed chunk is a message through Ray Serve twice (ModelServer to Router, Router to the HTTP proxy),
which costs far more than decoding a token on a GPU; Ray Serve LLM batches its stream for the same reason.
The first chunk is never held (time to first token is unchanged); later ones wait at most the interval, or
until the next token arrives, whichever is later. Merged chunks concatenate their text and lists and keep
the latest value of everything else (finish reason, token counts).
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


async def coalesce_chunks(chunks: AsyncGenerator[C], interval_s: float) -> AsyncGenerator[C]:
    """Yield ``chunks`` merged so that at most one goes out per ``interval_s`` (0 passes every chunk).

    Closing this stream closes ``chunks`` at once, so a client that leaves frees its generation slot.
    """
    pending: C | None = None
    last_sent = float("-inf")
    async with aclosing(chunks):
        async for chunk in chunks:
            pending = chunk if pending is None else merge_chunks(pending, chunk)
            now = time.monotonic()
            if now - last_sent >= interval_s:
                yield pending
                pending, last_sent = None, now
    if pending is not None:
        yield pending
