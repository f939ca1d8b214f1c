"""Stream coalescing: fewer chunks at high token rates, never a held first token, nothing lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator

from lmops_runtime.engine.coalesce import StreamPacer, coalesce_chunks, merge_chunks
from lmops_runtime.protocol import StreamChunk


async def _tokens(pieces: list[str], gap_s: float) -> AsyncGenerator[StreamChunk]:
    for index, piece in enumerate(pieces):
        await asyncio.sleep(gap_s)
        last = index == len(pieces) - 1
        yield StreamChunk(
            text=piece,
            finish_reason="length" if last else None,
            prompt_tokens=3 if last else None,
            completion_tokens=len(pieces) if last else None,
        )


async def _collect(chunks: AsyncIterator[StreamChunk]) -> list[tuple[float, StreamChunk]]:
    started = time.monotonic()
    return [(time.monotonic() - started, chunk) async for chunk in chunks]


def test_merge_concatenates_text_and_keeps_the_latest_counts() -> None:
    last = StreamChunk(text="c", finish_reason="stop", completion_tokens=3)
    merged = merge_chunks(StreamChunk(text="ab"), last)
    assert merged == StreamChunk(text="abc", finish_reason="stop", completion_tokens=3)
    assert merge_chunks(StreamChunk(text="x", prompt_tokens=2), StreamChunk(text="")).prompt_tokens == 2


async def test_fast_tokens_are_merged_and_nothing_is_lost() -> None:
    pieces = [f"t{i} " for i in range(40)]
    out = await _collect(coalesce_chunks(_tokens(pieces, 0.005), interval_s=0.05))
    chunks = [chunk for _, chunk in out]
    assert "".join(c.text for c in chunks) == "".join(pieces)
    assert chunks[0].text == "t0 "  # the first token goes out on its own, at once
    assert 2 <= len(chunks) <= 12  # ~0.2 s of tokens in 50 ms windows, not 40 messages
    assert chunks[-1].finish_reason == "length" and chunks[-1].completion_tokens == 40
    assert all(c.finish_reason is None for c in chunks[:-1])


async def test_slow_tokens_and_a_zero_interval_pass_through_one_by_one() -> None:
    pieces = ["a", "b", "c", "d"]
    slow = await _collect(coalesce_chunks(_tokens(pieces, 0.03), interval_s=0.01))
    assert [c.text for _, c in slow] == pieces
    unmerged = await _collect(coalesce_chunks(_tokens(pieces * 5, 0.0), interval_s=0.0))
    assert len(unmerged) == 20


async def test_closing_the_stream_closes_the_generation_at_once() -> None:
    closed: list[bool] = []

    async def endless() -> AsyncGenerator[StreamChunk]:
        try:
            while True:
                await asyncio.sleep(0)
                yield StreamChunk(text="x")
        finally:
            closed.append(True)

    stream = coalesce_chunks(endless(), interval_s=0.0)
    assert (await anext(stream)).text == "x"
    await stream.aclose()
    assert closed == [True]


async def test_first_chunk_is_not_delayed_by_the_interval() -> None:
    out = await _collect(coalesce_chunks(_tokens(["x", "y"], 0.02), interval_s=5.0))
    first_at, first = out[0]
    assert first.text == "x" and first_at < 1.0
    assert [c.text for _, c in out] == ["x", "y"]  # the held tail is flushed when the stream ends


def test_the_pacer_widens_a_window_only_past_the_budget() -> None:
    pacer = StreamPacer()
    pacer.open = 32
    assert pacer.window(0.05, 200) == 32 / 200  # 32 streams share 200 chunks a second
    assert pacer.window(0.05, 0) == 0.05  # no budget
    assert pacer.window(0.0, 200) == 0.0  # every token alone was asked for
    pacer.open = 4
    assert pacer.window(0.05, 200) == 0.05  # few streams keep their own interval


async def test_many_open_streams_share_the_replicas_chunk_budget() -> None:
    """Eight streams of 30 fast tokens at a 10 ms interval: alone, each would send ~30 chunks; sharing 80
    chunks a second, each window is 8 / 80 = 100 ms, so about 0.3 s of tokens go out in a handful."""
    pieces = [f"t{i} " for i in range(30)]
    pacer = StreamPacer()
    streams = [coalesce_chunks(_tokens(pieces, 0.01), 0.01, pacer, chunks_per_s=80) for _ in range(8)]
    outs = await asyncio.gather(*(_collect(s) for s in streams))
    assert pacer.open == 0  # every stream that ended left the budget
    for out in outs:
        chunks = [chunk for _, chunk in out]
        assert "".join(c.text for c in chunks) == "".join(pieces) and chunks[0].text == "t0 "
        assert len(chunks) <= 8
    alone = await _collect(coalesce_chunks(_tokens(pieces, 0.01), 0.01, StreamPacer(), chunks_per_s=80))
    assert len(alone) >= 12  # one stream is far under the budget: its own 10 ms interval
