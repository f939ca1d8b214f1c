"""Text generation for one loaded model: validation, routing to a batching backend, detokenization, stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, aclosing, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Literal, TypeVar

from lmops_runtime.config import BatchingConfig
from lmops_runtime.engine.coalesce import StreamPacer, coalesce_chunks
from lmops_runtime.engine.continuous import ContinuousBatcher
from lmops_runtime.engine.fanout import gather_or_cancel, interleave
from lmops_runtime.engine.logprobs import StepLogprobs, TokenTexts
from lmops_runtime.engine.params import SamplingParams, resolve_params
from lmops_runtime.engine.prompt import prompt_token_ids
from lmops_runtime.engine.scoring import prompt_logprobs
from lmops_runtime.engine.solo import SoloRunner
from lmops_runtime.engine.static import StaticBatcher
from lmops_runtime.engine.text import IncrementalDecoder, StopMatcher, cut_at_stop
from lmops_runtime.engine.tokens import TokenUpdate, eos_token_ids
from lmops_runtime.loading import LoadedModel
from lmops_runtime.protocol import (
    FinishReason,
    GenerateRequest,
    GenerateResult,
    StreamChunk,
    TokenLogprob,
)

Backend = Literal["continuous", "static"]
T = TypeVar("T")


@dataclass(frozen=True)
class PreparedRequest:
    input_ids: list[int]
    params: SamplingParams
    #: The prompt as text, for an echo request only.
    echo_text: str | None = None

    @property
    def echo(self) -> bool:
        return self.echo_text is not None


class TextGenerator:
    """Serves GenerateRequests for one causal LM.

    Greedy and unseeded sampling requests share a batch (continuous batching by default, ``@serve.batch``
    static batching as the alternative); beam search, seeded sampling, requests for logprobs (which the
    continuous batching manager does not expose) and, beside the continuous batch, requests with penalties or
    a logit bias (which it does not apply) run alone (see ``solo``).
    """

    def __init__(
        self, loaded: LoadedModel, batching: BatchingConfig, backend: Backend = "continuous"
    ) -> None:
        self._loaded = loaded
        self._tokenizer = loaded.tokenizer
        self._texts = TokenTexts(loaded.tokenizer)
        self._vocab_size = int(loaded.model.config.get_text_config().vocab_size)
        eos_ids = eos_token_ids(loaded.model, loaded.tokenizer)
        pad_id = int(loaded.tokenizer.pad_token_id)
        # Apart from the continuous batching thread, the model is used from this one thread only.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmops-model")
        self._continuous: ContinuousBatcher | None = None
        self._static: StaticBatcher | None = None
        if backend == "continuous":
            self._continuous = ContinuousBatcher(
                loaded.model, eos_ids, pad_id, batching, loaded.max_sequence_length, self._vocab_size
            )
        else:
            self._static = StaticBatcher(loaded.model, loaded.tokenizer, eos_ids, batching, self._executor)
        self._solo = SoloRunner(loaded.model, loaded.tokenizer, eos_ids, self._executor, self.exclusive)
        self.backend: Backend = backend
        self._pacer = StreamPacer()

    def exclusive(self) -> AbstractContextManager[None]:
        """Held while this thread uses the model outside the continuous batch (pauses the batch loop)."""
        return self._continuous.paused() if self._continuous is not None else nullcontext()

    async def run_exclusive(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (which uses the model) on the model thread while nothing else uses the model."""

        def call() -> T:
            with self.exclusive():
                return fn()

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def prepare(self, request: GenerateRequest) -> PreparedRequest:
        """Tokenize and validate; raises InvalidRequestError before any work is queued."""
        input_ids = prompt_token_ids(self._tokenizer, request, self._vocab_size)
        spec = self._loaded.spec
        params = resolve_params(
            request, spec.generation, len(input_ids), self._loaded.max_sequence_length, self._vocab_size
        )
        echo_text = None
        if request.echo:
            prompt = request.prompt
            echo_text = prompt if isinstance(prompt, str) else str(self._tokenizer.decode(input_ids))
        return PreparedRequest(input_ids, params, echo_text)

    async def _prompt_logprobs(self, prepared: PreparedRequest) -> list[TokenLogprob] | None:
        """The echoed prompt's teacher-forced logprobs, when the request asked for echo and logprobs."""
        top_n = prepared.params.logprobs
        if not prepared.echo or top_n is None:
            return None
        loaded, ids = self._loaded, prepared.input_ids
        steps = await self.run_exclusive(lambda: prompt_logprobs(loaded, ids, top_n))
        return self._texts.convert(steps)

    def _logprobs(
        self, prepared: PreparedRequest, steps: list[StepLogprobs] | None
    ) -> list[TokenLogprob] | None:
        if prepared.params.logprobs is None:
            return None
        if steps is None:
            raise RuntimeError(
                "the generation backend returned no logprobs for a request that asked for them"
            )
        return self._texts.convert(steps)

    async def _updates(self, prepared: PreparedRequest, stream: bool) -> AsyncGenerator[TokenUpdate]:
        params = prepared.params
        if params.max_new_tokens == 0:  # echo only: nothing to generate
            yield TokenUpdate([], "length", [] if params.logprobs is not None else None)
            return
        batchable = params.logprobs is None and (
            params.strategy == "greedy" or (params.strategy == "sample" and params.seed is None)
        )
        if batchable and not params.adjusts_logits and self._continuous is not None:
            async for update in self._continuous.run(prepared.input_ids, params):
                yield update
        elif batchable and self._static is not None and not stream:
            yield await self._static.generate(prepared.input_ids, params)
        else:
            async for update in self._solo.run(prepared.input_ids, params, stream):
                yield update

    async def generate(
        self, request: GenerateRequest, prepared: PreparedRequest | None = None
    ) -> GenerateResult:
        """One generation; ``prepared`` (from ``prepare(request)``) when the caller validated it already."""
        prepared = prepared or self.prepare(request)
        prompt_lp = await self._prompt_logprobs(prepared)
        stops = prepared.params.stop
        decoder = IncrementalDecoder(self._tokenizer)
        matcher = StopMatcher(stops)
        final: TokenUpdate | None = None
        seen = 0
        # aclosing: leaving the loop early cancels the backend's request at once.
        async with aclosing(self._updates(prepared, stream=False)) as updates:
            async for update in updates:
                final = update
                if stops and update.finish_reason is None:
                    # Watch for stop sequences as tokens arrive, to end the request early.
                    matcher.feed(decoder.add(update.tokens[seen:]))
                    seen = len(update.tokens)
                    if matcher.stopped:
                        break
        assert final is not None
        text = self._tokenizer.decode(final.tokens, skip_special_tokens=True)
        text, stopped = cut_at_stop(text, stops)
        reason: FinishReason = "stop" if stopped else final.finish_reason or "stop"
        return GenerateResult(
            text=text,
            prompt_tokens=len(prepared.input_ids),
            completion_tokens=len(final.tokens),
            finish_reason=reason,
            logprobs=self._logprobs(prepared, final.logprobs),
            prompt_logprobs=prompt_lp,
            prompt_text=prepared.echo_text,
        )

    def stream(
        self, request: GenerateRequest, prepared: PreparedRequest | None = None, index: int = 0
    ) -> AsyncIterator[StreamChunk]:
        """``request``'s chunks, those decoded within one window of each other merged (``coalesce``)."""
        return coalesce_chunks(
            self._stream(request, prepared, index),
            request.stream_interval_ms / 1000,
            self._pacer,
            request.stream_chunks_per_s,
        )

    async def _stream(
        self, request: GenerateRequest, prepared: PreparedRequest | None, index: int
    ) -> AsyncGenerator[StreamChunk]:
        """Token deltas as they are decoded; the last chunk says why generation ended and counts tokens.

        With logprobs, each chunk carries the logprobs of the tokens that arrived since the previous one; an
        echo request's first chunk carries the prompt's, and its text. Every chunk is tagged with ``index``.
        """
        prepared = prepared or self.prepare(request)
        prompt_lp = await self._prompt_logprobs(prepared)
        if prepared.echo:
            yield StreamChunk(text="", index=index, prompt_text=prepared.echo_text, prompt_logprobs=prompt_lp)
        decoder = IncrementalDecoder(self._tokenizer)
        matcher = StopMatcher(prepared.params.stop)
        seen = 0
        count = 0
        sent_logprobs = 0
        reason: FinishReason = "length"
        async with aclosing(self._updates(prepared, stream=True)) as updates:
            async for update in updates:
                delta = matcher.feed(decoder.add(update.tokens[seen:]))
                seen = count = len(update.tokens)
                logprobs = self._logprobs(prepared, (update.logprobs or [])[sent_logprobs:])
                if delta or logprobs:
                    sent_logprobs += len(logprobs or [])
                    yield StreamChunk(text=delta, index=index, logprobs=logprobs)
                if matcher.stopped:
                    break
                if update.finish_reason is not None:
                    reason = update.finish_reason
        tail = "" if matcher.stopped else matcher.feed(decoder.flush()) + matcher.flush()
        if matcher.stopped:
            reason = "stop"
        yield StreamChunk(
            text=tail,
            index=index,
            finish_reason=reason,
            prompt_tokens=len(prepared.input_ids),
            completion_tokens=count,
            logprobs=[] if prepared.params.logprobs is not None else None,
        )

    async def generate_many(self, requests: list[GenerateRequest]) -> list[GenerateResult]:
        """Several generations at once (they batch where their strategy allows); all validated first.

        The first failure fails the call and cancels the generations still running.
        """
        prepared = [self.prepare(request) for request in requests]
        return await gather_or_cancel([self.generate(r, p) for r, p in zip(requests, prepared, strict=True)])

    def stream_many(self, requests: list[GenerateRequest]) -> AsyncIterator[StreamChunk]:
        """The chunks of several streamed generations as they come, each tagged with its request's index.

        Every request is validated before any starts, so a bad one fails the call before its first chunk.
        A failing generation fails the whole stream; leaving early cancels all of them.
        """
        prepared = [self.prepare(request) for request in requests]
        return interleave(
            [partial(self.stream, r, p, i) for i, (r, p) in enumerate(zip(requests, prepared, strict=True))]
        )

    def queue_length(self) -> int:
        """Requests waiting for a batch slot (continuous or static batch); solo requests are not counted."""
        if self._continuous is not None:
            return self._continuous.waiting
        return self._static.waiting if self._static is not None else 0

    def check(self) -> None:
        """Raise if the batching thread died and won't restart (the health check also runs a forward pass)."""
        if self._continuous is not None:
            self._continuous.ensure_running()

    def close(self) -> None:
        if self._continuous is not None:
            self._continuous.close()
        if self._static is not None:
            self._static.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
