"""One request at a time through ``model.generate``: beam search, seeded sampling, and streaming fallback.

Beam search cannot share a continuous batch, and a seeded request must not draw from the RNG that batched
sampling shares, so these run alone on one worker thread (the event loop never blocks on the model).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import torch
from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from lmops_runtime.engine.logprobs import LogprobRecorder, StepLogprobs
from lmops_runtime.engine.params import SamplingParams
from lmops_runtime.engine.sampling import PerRowLogitAdjuster, PerRowSampler, RowSampling
from lmops_runtime.engine.stopping import PerRowStopStrings
from lmops_runtime.engine.tokens import TokenUpdate, trim_finished

_DONE = object()
T = TypeVar("T")


def generation_config(
    model: Any, eos_ids: Sequence[int], pad_id: int, max_new_tokens: int, beams: int
) -> Any:
    """A fresh greedy/beam config: a hub model's own sampling defaults must never leak into a request."""
    return GenerationConfig(  # type: ignore[no-untyped-call]
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=beams,
        early_stopping=beams > 1,
        eos_token_id=list(eos_ids) or None,
        pad_token_id=pad_id,
        bos_token_id=getattr(model.generation_config, "bos_token_id", None),
    )


def padded_batch(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Left-padded input ids and attention mask, so every row's last real token lines up for decoding."""
    width = max(len(row) for row in rows)
    ids = [[pad_id] * (width - len(row)) + list(row) for row in rows]
    mask = [[0] * (width - len(row)) + [1] * len(row) for row in rows]
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long, device=device),
        "attention_mask": torch.tensor(mask, dtype=torch.long, device=device),
    }


def generate_rows(
    model: Any,
    tokenizer: Any,
    rows: Sequence[Sequence[int]],
    params: Sequence[SamplingParams],
    eos_ids: Sequence[int],
    streamer: BaseStreamer | None = None,
    recorder: LogprobRecorder | None = None,
) -> list[TokenUpdate]:
    """Padded static ``generate`` of several rows with per-row sampling and stop sequences (not beams).

    Rows whose params ask for logprobs get them (see LogprobRecorder); a caller that streams passes the
    recorder its streamer reads from.
    """
    pad_id = int(tokenizer.pad_token_id)
    inputs = padded_batch(rows, pad_id, model.device)
    width = inputs["input_ids"].shape[1]
    longest = max(p.max_new_tokens for p in params)
    stops = PerRowStopStrings(tokenizer, width, [p.stop for p in params])
    processors = LogitsProcessorList()
    if recorder is None and any(p.logprobs is not None for p in params):
        recorder = LogprobRecorder([p.logprobs for p in params])
    if recorder is not None:
        processors.append(recorder)  # first: it must see the raw logits
    if any(p.adjusts_logits for p in params):
        processors.append(PerRowLogitAdjuster(params, width))
    if any(p.strategy == "sample" for p in params):
        processors.append(PerRowSampler([RowSampling.for_params(p) for p in params]))
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            generation_config=generation_config(model, eos_ids, pad_id, longest, 1),
            logits_processor=processors,
            stopping_criteria=StoppingCriteriaList([stops]),
            streamer=streamer,
        )
    if recorder is not None:
        recorder.resolve(output[:, -1])
    results = []
    for row, p in enumerate(params):
        generated = output[row, width:].tolist()
        stopped_at = stops.stopped_at[row]
        if stopped_at is not None:
            update = TokenUpdate(generated[:stopped_at], "stop")
        else:
            update = trim_finished(generated, eos_ids, p.max_new_tokens)
        if recorder is not None and p.logprobs is not None:
            update = TokenUpdate(
                update.tokens, update.finish_reason, recorder.steps[row][: len(update.tokens)]
            )
        results.append(update)
    return results


def generate_beam(
    model: Any, tokenizer: Any, row: Sequence[int], params: SamplingParams, eos_ids: Sequence[int]
) -> TokenUpdate:
    """Beam search of one prompt; the best beam is returned."""
    pad_id = int(tokenizer.pad_token_id)
    inputs = padded_batch([row], pad_id, model.device)
    config = generation_config(model, eos_ids, pad_id, params.max_new_tokens, params.num_beams)
    with torch.inference_mode():
        output = model.generate(**inputs, generation_config=config)
    return trim_finished(output[0, len(row) :].tolist(), eos_ids, params.max_new_tokens)


class _QueueStreamer(BaseStreamer):
    """Hands each new token (and its logprobs, with a recorder) from the generate thread to the event loop;
    the first ``put`` is the prompt."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[object],
        recorder: LogprobRecorder | None = None,
    ) -> None:
        self._loop = loop
        self._queue = queue
        self._recorder = recorder
        self._seen_prompt = False
        self._count = 0

    def put(self, value: torch.Tensor) -> None:
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        steps: list[StepLogprobs] = []
        if self._recorder is not None:
            step = self._recorder.step(0, self._count, value)
            steps = [step] if step is not None else []
        self._count += 1
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (value.reshape(-1).tolist(), steps))

    def end(self) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, _DONE)


class SoloRunner:
    """Runs single requests on the model's worker thread, holding ``exclusive`` while they run."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        eos_ids: Sequence[int],
        executor: ThreadPoolExecutor,
        exclusive: Callable[[], AbstractContextManager[None]],
    ) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._eos_ids = list(eos_ids)
        self._executor = executor
        self._exclusive = exclusive

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        with self._exclusive():
            return fn(*args)

    def _generate_row(
        self,
        loop: asyncio.AbstractEventLoop,
        row: Sequence[int],
        params: SamplingParams,
        streamer: BaseStreamer | None = None,
        recorder: LogprobRecorder | None = None,
    ) -> asyncio.Future[list[TokenUpdate]]:
        return loop.run_in_executor(
            self._executor,
            self._call,
            generate_rows,
            self._model,
            self._tokenizer,
            [row],
            [params],
            self._eos_ids,
            streamer,
            recorder,
        )

    async def run(
        self, row: Sequence[int], params: SamplingParams, stream: bool
    ) -> AsyncGenerator[TokenUpdate]:
        """Yield token updates; beams (and non-streamed calls) yield once, at the end."""
        loop = asyncio.get_running_loop()
        if params.strategy == "beam":
            yield await loop.run_in_executor(
                self._executor,
                self._call,
                generate_beam,
                self._model,
                self._tokenizer,
                row,
                params,
                self._eos_ids,
            )
            return
        if not stream:
            yield (await self._generate_row(loop, row, params))[0]
            return
        queue: asyncio.Queue[object] = asyncio.Queue()
        recorder = LogprobRecorder([params.logprobs]) if params.logprobs is not None else None
        streamer = _QueueStreamer(loop, queue, recorder)
        future = self._generate_row(loop, row, params, streamer, recorder)

        # If generate fails before the streamer's end(), the queue must still be released.
        def release(done: asyncio.Future[list[TokenUpdate]]) -> None:
            if done.exception() is not None:
                queue.put_nowait(_DONE)

        future.add_done_callback(release)
        tokens: list[int] = []
        steps: list[StepLogprobs] = []
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            assert isinstance(item, tuple)
            tokens.extend(item[0])
            steps.extend(item[1])
            yield TokenUpdate(list(tokens), logprobs=list(steps) if recorder is not None else None)
        yield (await future)[0]
