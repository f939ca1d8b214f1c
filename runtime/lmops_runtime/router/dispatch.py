"""Dispatch: which revision serves a call, the call itself (one retry on stable), and streaming as SSE.

The decisions (weights, stickiness, pinning, the health breaker) are pure functions of ``router.traffic``;
this class holds the Serve handles and the breaker state and counts every outcome in ``Telemetry``.
No ``from __future__ import annotations``: ``Request`` is used in signatures FastAPI may inspect.
"""

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from ray import serve

from lmops_runtime import config as contract
from lmops_runtime.contract import REVISION_HEADER
from lmops_runtime.protocol import (
    GenerateBatch,
    GenerateBatchResult,
    GenerateRequest,
    GenerateResult,
    StreamChunk,
)
from lmops_runtime.router.calls import Attempt, call_with_retry, cause_message, open_stream, wait_assigned
from lmops_runtime.router.errors import ApiError, bad_request, error_body
from lmops_runtime.router.openai_format import summed_usage
from lmops_runtime.router.responses import Usage
from lmops_runtime.router.stats import NO_REVISION
from lmops_runtime.router.telemetry import Telemetry
from lmops_runtime.router.traffic import (
    HealthTracker,
    choose_revision,
    no_retry,
    pinned_revision,
    retry_revision,
    served_revisions,
    sticky_point,
)

# Renders one stream chunk as the choice of a chunk body; the flag says it is its choice's first chunk.
ChoiceRenderer = Callable[[StreamChunk, bool], BaseModel]


def sse(payload: BaseModel | dict[str, Any] | str) -> bytes:
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json")
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


class Dispatcher:
    """Routes and calls the revisions of the current RouterConfig; counts attempts in ``telemetry``."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self.current: contract.RouterConfig | None = None
        self.handles: dict[str, Any] = {}
        # Set when a revision leaves the config: its calls still waiting for a replica move on to the retry.
        self.withdrawn: dict[str, asyncio.Event] = {}
        self.health = HealthTracker()

    def configure(self, config: contract.RouterConfig) -> None:
        wanted = set(served_revisions(config))
        for rev in [r for r in self.handles if r not in wanted]:
            del self.handles[rev]
            self.withdrawn.pop(rev).set()
        self.health.forget_except(wanted)
        self.current = config

    def config(self) -> contract.RouterConfig:
        if self.current is None:
            raise ApiError(503, "Router has no user_config yet.", type_="server_error", code="not_configured")
        return self.current

    def health_report(self) -> dict[str, dict[str, Any]]:
        """Breaker state of the served revisions, as pushed to the stats actor and shown by /healthz."""
        revisions = served_revisions(self.current) if self.current else []
        return self.health.snapshot(revisions, time.monotonic())

    def _handle(self, revision: str) -> Any:
        handle = self.handles.get(revision)
        if handle is None:
            handle = serve.get_deployment_handle(
                contract.SERVER_DEPLOYMENT, app_name=contract.server_app_name(revision)
            )
            self.handles[revision] = handle
            self.withdrawn[revision] = asyncio.Event()
        return handle

    def _on_attempt(self, attempt: Attempt) -> None:
        """Counters and health for failed attempts; successes are recorded later, with their tokens."""
        if attempt.code >= 500:
            self.health.record_failure(attempt.revision, time.monotonic())
        if attempt.code != 200:
            self.telemetry.record(attempt.revision, attempt.code, attempt.latency_s)

    # ---- routing ---------------------------------------------------------------------------------------

    def _first_revision(self, request: Request) -> str:
        config = self.config()
        point = random.random()
        if config.sticky_header:
            key = request.headers.get(config.sticky_header)
            if key:
                point = sticky_point(key)
        return choose_revision(config, point, self.health, time.monotonic())

    def _retry_target(self, failed: str) -> str | None:
        return retry_revision(self.config(), failed, self.health, time.monotonic())

    def _route(self, request: Request) -> tuple[str, Callable[[str], str | None]]:
        """(first revision, retry rule): the pinned revision with no retry, else the traffic split's."""
        pin = request.headers.get(REVISION_HEADER)
        if pin is None:
            return self._first_revision(request), self._retry_target
        try:
            revision = pinned_revision(self.config(), pin)
        except ValueError as exc:
            self.telemetry.record(NO_REVISION, 400, 0.0)
            raise bad_request(str(exc), code="unknown_revision") from None
        return revision, no_retry

    # ---- unary calls -----------------------------------------------------------------------------------

    async def unary(self, request: Request, method: str, payload: Any) -> tuple[str, Any, float]:
        """Route, call (with one retry) and count a failed attempt; returns (revision, result, latency).
        The caller records the success, with the tokens it read from the result."""
        deadline = time.monotonic() + self.config().scale_from_zero_timeout_s

        async def call(revision: str, budget: float) -> Any:
            response = getattr(self._handle(revision), method).remote(payload)
            await wait_assigned(response, budget, self.withdrawn[revision])
            return await response

        first, retry = self._route(request)
        started = time.monotonic()
        revision, result = await call_with_retry(first, retry, call, deadline, self._on_attempt)
        self.health.record_success(revision)
        return revision, result, time.monotonic() - started

    async def generate_all(
        self, request: Request, gens: list[GenerateRequest], n: int
    ) -> tuple[str, list[GenerateResult], Usage]:
        """All choices of one response from one revision: one handle call, counted once.

        Returns the revision, the results in choice order and the response's usage.
        """
        if len(gens) == 1:
            revision, result, latency = await self.unary(request, "generate", gens[0])
            assert isinstance(result, GenerateResult)
            tokens = (result.prompt_tokens, result.completion_tokens)
            results = [result]
        else:
            revision, batch, latency = await self.unary(
                request, "generate_batch", GenerateBatch(requests=gens)
            )
            assert isinstance(batch, GenerateBatchResult)
            results = batch.results
            tokens = summed_usage(
                [r.prompt_tokens for r in results], [r.completion_tokens for r in results], n
            )
        self.telemetry.record(revision, 200, latency, *tokens)
        return revision, results, Usage.of(*tokens)

    # ---- streams ---------------------------------------------------------------------------------------

    async def stream(
        self,
        request: Request,
        gens: list[GenerateRequest],
        n: int,
        envelope: BaseModel,
        render: ChoiceRenderer,
        include_usage: bool,
    ) -> StreamingResponse:
        """Stream one or several generations as SSE: each chunk is ``envelope`` with the one choice
        ``render`` makes of it; a failure before the first chunk is retried, a later one ends the stream.
        With ``include_usage``, one usage-only chunk (usage summed over choices) follows the last end."""

        def chunk_body(chunk: StreamChunk, first: bool) -> BaseModel:
            return envelope.model_copy(update={"choices": [render(chunk, first)]})

        config = self.config()
        deadline = time.monotonic() + config.scale_from_zero_timeout_s
        pacing = {
            "stream_interval_ms": config.stream_interval_ms,
            "stream_chunks_per_s": config.stream_chunks_per_s,
        }
        gens = [g.model_copy(update=pacing) for g in gens]
        expected = len(gens)

        async def start(revision: str, budget: float) -> tuple[StreamChunk, AsyncIterator[StreamChunk]]:
            handle = self._handle(revision).options(stream=True)
            if expected == 1:
                response = handle.generate_stream.remote(gens[0])
            else:
                response = handle.generate_batch_stream.remote(GenerateBatch(requests=gens))
            await wait_assigned(response, budget, self.withdrawn[revision])
            try:
                first = await response.__anext__()
            except StopAsyncIteration:
                first = StreamChunk(text="", finish_reason="stop", prompt_tokens=0, completion_tokens=0)
            return first, response

        pinned_or_split, retry = self._route(request)
        revision, first, rest, started = await open_stream(
            pinned_or_split, retry, start, deadline, self._on_attempt
        )

        async def body() -> AsyncIterator[bytes]:
            chunk: StreamChunk = first
            seen: set[int] = set()
            prompt_tokens = [0] * expected
            completion_tokens = [0] * expected
            finished: set[int] = set()
            try:
                while True:
                    yield sse(chunk_body(chunk, chunk.index not in seen))
                    seen.add(chunk.index)
                    if chunk.finish_reason is not None:
                        finished.add(chunk.index)
                        prompt_tokens[chunk.index] = chunk.prompt_tokens or 0
                        completion_tokens[chunk.index] = chunk.completion_tokens or 0
                        if len(finished) == expected:
                            break
                    try:
                        chunk = await rest.__anext__()
                    except StopAsyncIteration:
                        break
                prompt, completion = summed_usage(prompt_tokens, completion_tokens, n)
                self.health.record_success(revision)
                self.telemetry.record(revision, 200, time.monotonic() - started, prompt, completion)
                for index in range(expected):
                    if index not in finished:
                        end = StreamChunk(text="", index=index, finish_reason="stop")
                        yield sse(chunk_body(end, index not in seen))
                if include_usage:
                    yield sse(envelope.model_copy(update={"usage": Usage.of(prompt, completion)}))
            except asyncio.CancelledError:
                # The client went away: stop generating on the replica and count it as nginx's 499.
                cancel = getattr(rest, "cancel", None)
                if cancel:
                    cancel()
                self.telemetry.record(revision, 499, time.monotonic() - started)
                raise
            except Exception as exc:
                self.health.record_failure(revision, time.monotonic())
                self.telemetry.record(revision, 500, time.monotonic() - started)
                message = f"Revision {revision} failed mid-stream: {cause_message(exc)}"
                yield sse(error_body(message, type_="server_error", code="server_error"))
            yield sse("[DONE]")

        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={REVISION_HEADER: revision, "Cache-Control": "no-cache"},
        )
