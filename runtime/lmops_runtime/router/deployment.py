"""The Router Serve deployment: HTTP ingress, traffic split, limits, retries and counters.

Everything that decides (schemas, traffic, limits, stats) is pure and lives in sibling modules; this class
wires them to FastAPI, Serve handles and the stats actor. No ``from __future__ import annotations`` here:
Serve's ingress re-wraps the endpoint methods, and FastAPI must see ``Request`` as a class, not a string.
"""

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from ray import serve
from ray.serve.metrics import Counter, Histogram

from lmops_runtime import config as contract
from lmops_runtime import engine_metrics
from lmops_runtime.protocol import (
    ClassifyRequest,
    ClassifyResult,
    EmbedRequest,
    EmbedResult,
    GenerateBatch,
    GenerateBatchResult,
    GenerateRequest,
    GenerateResult,
    ScoreRequest,
    ScoreResult,
    StreamChunk,
)
from lmops_runtime.router import stats_actor
from lmops_runtime.router.calls import Attempt, call_with_retry, cause_message, open_stream, wait_assigned
from lmops_runtime.router.errors import ApiError, bad_request, error_body
from lmops_runtime.router.limits import ApiKeys, RateLimiter, rate_limited
from lmops_runtime.router.openai_format import (
    chat_logprobs,
    completion_logprobs,
    summed_usage,
    text_length,
)
from lmops_runtime.router.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ScoreApiRequest,
    SeedGenerateRequest,
    TextsRequest,
    encode_embedding,
    usage,
)
from lmops_runtime.router.stats import (
    LATENCY_BUCKETS_S,
    NO_REVISION,
    Deltas,
    RevisionCounters,
    deltas_from_wire,
    deltas_to_wire,
    render_prometheus,
    revision_json,
)
from lmops_runtime.router.traffic import (
    HealthTracker,
    choose_revision,
    no_retry,
    pinned_revision,
    retry_revision,
    served_revisions,
    sticky_point,
)

REVISION_HEADER = "x-lmops-revision"
M = TypeVar("M", bound=BaseModel)

api = FastAPI(title="lmops", docs_url=None, redoc_url=None, openapi_url=None)


@api.exception_handler(ApiError)
async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


@api.exception_handler(RequestValidationError)
async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    param = ".".join(str(p) for p in first.get("loc", ())) or None
    return JSONResponse(error_body(str(first.get("msg")), param=param), status_code=400)


@api.exception_handler(Exception)
async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    """A bug in the Router still answers in OpenAI's format, so clients parse it like any server error."""
    message = f"Internal error in the Router: {type(exc).__name__}"
    return JSONResponse(error_body(message, type_="server_error", code="internal_error"), status_code=500)


@api.exception_handler(404)
async def _not_found(request: Request, _: Exception) -> JSONResponse:
    return JSONResponse(error_body(f"Unknown path {request.url.path}", code="not_found"), status_code=404)


@api.exception_handler(405)
async def _bad_method(request: Request, _: Exception) -> JSONResponse:
    message = f"Method {request.method} is not allowed on {request.url.path}"
    return JSONResponse(error_body(message, code="method_not_allowed"), status_code=405)


def _validation_message(exc: ValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    return f"Invalid value for '{param}': {first['msg']}" if param else first["msg"], param


def _parse(model: type[M], body: bytes) -> M:
    """Body bytes to a request model; every problem is a 400 in OpenAI's format, never a 500."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request(f"Request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("Request body must be a JSON object.", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, param = _validation_message(exc)
        raise bad_request(message, param=param) from None


def _sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


@serve.deployment(name=contract.ROUTER_DEPLOYMENT, max_ongoing_requests=256)
@serve.ingress(api)
class Router:
    """The ingress of application ``lm``; constructed with RouterArgs, reconfigured with RouterConfig.

    Every answer names the revision that served it in the ``x-lmops-revision`` response header. A request
    may carry the same header to pin itself to one revision the Router is configured for (weight-0 warm
    and canary revisions included; an unknown one is a 400). Pinning is for operators - the quality gate
    evaluating a canary before it gets traffic, debugging one revision - not for load balancing: a pinned
    call is never retried on another revision (its failure is reported as is) and ignores the health
    breaker, and it is counted on its revision like any other call. It bypasses no protection: API keys,
    rate limits and the NetworkPolicy in front of the Router apply to pinned calls exactly as to others.

    ``POST /v1/score`` (an lmops extension, generate models only) returns each input text's teacher-forced
    log-likelihood and scored token count, from which perplexity follows; it honours the pin header too.
    """

    def __init__(self, args: dict[str, Any]) -> None:
        self.args = contract.RouterArgs.model_validate(args)
        self.config: contract.RouterConfig | None = None
        self.created = int(time.time())
        self.handles: dict[str, Any] = {}
        self.health = HealthTracker()
        self.api_keys: ApiKeys | None = None
        self.limiter: RateLimiter | None = None
        self.deltas: Deltas = {}
        self.pusher: asyncio.Task[None] | None = None
        self.stats_actor: Any = None
        context = serve.get_replica_context()
        self.app_name = context.app_name if context else contract.ROUTER_APP
        self.replica_id = context.replica_id.unique_id if context else uuid.uuid4().hex
        # Ray annotates tag_keys as a 1-tuple; any tuple of names works.
        rev_code: Any = ("revision", "code")
        rev_kind: Any = ("revision", "kind")
        self.m_requests = Counter("lmops_requests", description="Call attempts.", tag_keys=rev_code)
        self.m_latency = Histogram(
            "lmops_request_duration_seconds",
            description="Call latency by revision.",
            boundaries=list(LATENCY_BUCKETS_S),
            tag_keys=("revision",),
        )
        self.m_tokens = Counter("lmops_tokens", description="Tokens by revision.", tag_keys=rev_kind)

    # ---- configuration -------------------------------------------------------------------------------

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply a RouterConfig: weights, limits and keys change in place, no replica restart."""
        config = contract.RouterConfig.model_validate(user_config)
        wanted = set(served_revisions(config))
        for rev in [r for r in self.handles if r not in wanted]:
            del self.handles[rev]
        self.health.forget_except(wanted)
        if config.api_keys_file is None:
            self.api_keys = None
        elif self.api_keys is None or self.api_keys.path != config.api_keys_file:
            self.api_keys = ApiKeys(config.api_keys_file)
            self.api_keys.refresh(time.monotonic())
        if config.rate_limit_per_minute is None:
            self.limiter = None
        elif self.limiter is None or self.limiter.per_minute != config.rate_limit_per_minute:
            share = self.limiter.share if self.limiter else 1
            self.limiter = RateLimiter(config.rate_limit_per_minute, share=share)
        self.config = config
        self._ensure_pusher()

    def _config(self) -> contract.RouterConfig:
        if self.config is None:
            raise ApiError(503, "Router has no user_config yet.", type_="server_error", code="not_configured")
        return self.config

    def _handle(self, revision: str) -> Any:
        handle = self.handles.get(revision)
        if handle is None:
            handle = serve.get_deployment_handle(
                contract.SERVER_DEPLOYMENT, app_name=contract.server_app_name(revision)
            )
            self.handles[revision] = handle
        return handle

    # ---- counters ------------------------------------------------------------------------------------

    def _record(
        self, revision: str, code: int, latency_s: float, prompt: int = 0, completion: int = 0
    ) -> None:
        self.deltas.setdefault(revision, RevisionCounters()).observe(code, latency_s, prompt, completion)
        self.m_requests.inc(tags={"revision": revision, "code": str(code)})
        self.m_latency.observe(latency_s, tags={"revision": revision})
        if prompt:
            self.m_tokens.inc(prompt, tags={"revision": revision, "kind": "prompt"})
        if completion:
            self.m_tokens.inc(completion, tags={"revision": revision, "kind": "completion"})

    def _on_attempt(self, attempt: Attempt) -> None:
        """Counters and health for failed attempts; successes are recorded later, with their tokens."""
        now = time.monotonic()
        if attempt.code >= 500:
            self.health.record_failure(attempt.revision, now)
        if attempt.code != 200:
            self._record(attempt.revision, attempt.code, attempt.latency_s)

    def _ensure_pusher(self) -> None:
        if self.pusher is None or self.pusher.done():
            self.pusher = asyncio.get_running_loop().create_task(self._push_loop())

    async def _push_loop(self) -> None:
        while True:
            await asyncio.sleep(stats_actor.PUSH_INTERVAL_S)
            with contextlib.suppress(Exception):
                await self._flush()

    async def _flush(self) -> None:
        """Send this replica's deltas to the stats actor; on failure they are kept for the next push."""
        deltas, self.deltas = self.deltas, {}
        config = self.config
        revisions = served_revisions(config) if config else []
        health = self.health.snapshot(revisions, time.monotonic())
        try:
            if self.stats_actor is None:
                self.stats_actor = stats_actor.get_or_create(self.app_name)
            live = await self.stats_actor.push.remote(self.replica_id, deltas_to_wire(deltas), health)
        except Exception:
            self.stats_actor = None
            restored = deltas
            for rev, counters in self.deltas.items():
                restored.setdefault(rev, RevisionCounters()).add(counters)
            self.deltas = restored
            raise
        if self.limiter is not None:
            self.limiter.share = max(1, int(live))

    # ---- request guards ------------------------------------------------------------------------------

    async def _guard(self, request: Request) -> bytes:
        """Auth, rate limit and size checks shared by every model endpoint; returns the body."""
        config = self._config()
        self._ensure_pusher()
        now = time.monotonic()
        try:
            caller = request.client.host if request.client else "unknown"
            if self.api_keys is not None:
                caller = "key:" + self.api_keys.authenticate(request.headers.get("authorization"), now)
            if self.limiter is not None:
                wait = self.limiter.acquire(caller, now)
                if wait is not None:
                    raise rate_limited(wait)
            declared = request.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > config.max_request_bytes:
                raise self._too_large(config)
            body = await request.body()
            if len(body) > config.max_request_bytes:
                raise self._too_large(config)
        except ApiError as exc:
            self._record(NO_REVISION, exc.status, time.monotonic() - now)
            raise
        return body

    @staticmethod
    def _too_large(config: contract.RouterConfig) -> ApiError:
        return ApiError(
            413,
            f"Request body exceeds the limit of {config.max_request_bytes} bytes.",
            code="request_too_large",
        )

    def _check_model(self, model: str) -> None:
        if model != self.args.model_name:
            raise ApiError(
                404,
                f"The model '{model}' does not exist; this endpoint serves '{self.args.model_name}'.",
                param="model",
                code="model_not_found",
            )

    def _check_tokens(self, value: int | None, param: str) -> None:
        limit = self._config().max_tokens_limit
        if value is not None and value > limit:
            raise bad_request(
                f"'{param}' is {value}, above this model's limit of {limit}.",
                param=param,
                code="max_tokens_exceeded",
            )

    def _reject(self, exc: ApiError, started: float) -> ApiError:
        self._record(NO_REVISION, exc.status, time.monotonic() - started)
        return exc

    def _parse_or_count(self, model: type[M], body: bytes, started: float) -> M:
        try:
            return _parse(model, body)
        except ApiError as exc:
            raise self._reject(exc, started) from None

    def _texts_or_count(self, body: bytes, started: float) -> list[str]:
        req = self._parse_or_count(TextsRequest, body, started)
        try:
            return req.all_texts()
        except ValueError as exc:
            raise self._reject(bad_request(str(exc)), started) from None

    # ---- routing -------------------------------------------------------------------------------------

    def _first_revision(self, request: Request) -> str:
        config = self._config()
        point = random.random()
        if config.sticky_header:
            key = request.headers.get(config.sticky_header)
            if key:
                point = sticky_point(key)
        return choose_revision(config, point, self.health, time.monotonic())

    def _retry_target(self, failed: str) -> str | None:
        return retry_revision(self._config(), failed, self.health, time.monotonic())

    def _route(self, request: Request) -> tuple[str, Callable[[str], str | None]]:
        """(first revision, retry rule): the pinned revision with no retry, else the traffic split's."""
        pin = request.headers.get(REVISION_HEADER)
        if pin is None:
            return self._first_revision(request), self._retry_target
        try:
            revision = pinned_revision(self._config(), pin)
        except ValueError as exc:
            raise self._reject(bad_request(str(exc), code="unknown_revision"), time.monotonic()) from None
        return revision, no_retry

    async def _unary(self, request: Request, method: str, payload: Any) -> tuple[str, Any, float]:
        """Route, call (with one retry) and count a unary call; returns (revision, result, latency)."""
        deadline = time.monotonic() + self._config().scale_from_zero_timeout_s

        async def call(revision: str, budget: float) -> Any:
            response = getattr(self._handle(revision), method).remote(payload)
            await wait_assigned(response, budget)
            return await response

        first, retry = self._route(request)
        started = time.monotonic()
        revision, result = await call_with_retry(first, retry, call, deadline, self._on_attempt)
        self.health.record_success(revision)
        return revision, result, time.monotonic() - started

    async def _generate(self, request: Request, gen: GenerateRequest) -> tuple[str, GenerateResult]:
        revision, result, latency = await self._unary(request, "generate", gen)
        assert isinstance(result, GenerateResult)
        self._record(revision, 200, latency, result.prompt_tokens, result.completion_tokens)
        return revision, result

    async def _generate_all(
        self, request: Request, gens: list[GenerateRequest], n: int
    ) -> tuple[str, list[GenerateResult], tuple[int, int]]:
        """All choices of one response from one revision: one handle call, counted once.

        Returns the revision, the results in choice order and the response's (prompt, completion) usage.
        """
        if len(gens) == 1:
            revision, result = await self._generate(request, gens[0])
            return revision, [result], (result.prompt_tokens, result.completion_tokens)
        revision, batch, latency = await self._unary(request, "generate_batch", GenerateBatch(requests=gens))
        assert isinstance(batch, GenerateBatchResult)
        tokens = summed_usage(
            [r.prompt_tokens for r in batch.results], [r.completion_tokens for r in batch.results], n
        )
        self._record(revision, 200, latency, *tokens)
        return revision, batch.results, tokens

    async def _stream(
        self,
        request: Request,
        gens: list[GenerateRequest],
        n: int,
        render: Callable[[StreamChunk, bool], dict[str, Any]],
        usage_envelope: dict[str, Any] | None,
    ) -> StreamingResponse:
        """Stream one or several generations as SSE, each chunk rendered by ``render(chunk, first_of_its
        choice)``; a failure before the first chunk is retried, a later one ends the stream. With
        ``usage_envelope``, one usage-only chunk (that envelope, usage summed over choices) follows the last
        choice's end."""
        config = self._config()
        deadline = time.monotonic() + config.scale_from_zero_timeout_s
        gens = [g.model_copy(update={"stream_interval_ms": config.stream_interval_ms}) for g in gens]
        expected = len(gens)

        async def start(revision: str, budget: float) -> tuple[StreamChunk, AsyncIterator[StreamChunk]]:
            handle = self._handle(revision).options(stream=True)
            if expected == 1:
                response = handle.generate_stream.remote(gens[0])
            else:
                response = handle.generate_batch_stream.remote(GenerateBatch(requests=gens))
            await wait_assigned(response, budget)
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
                    yield _sse(render(chunk, chunk.index not in seen))
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
                self._record(revision, 200, time.monotonic() - started, prompt, completion)
                for index in range(expected):
                    if index not in finished:
                        end = StreamChunk(text="", index=index, finish_reason="stop")
                        yield _sse(render(end, index not in seen))
                if usage_envelope is not None:
                    yield _sse({**usage_envelope, "choices": [], "usage": usage(prompt, completion)})
            except asyncio.CancelledError:
                # The client went away: stop generating on the replica and count it as nginx's 499.
                cancel = getattr(rest, "cancel", None)
                if cancel:
                    cancel()
                self._record(revision, 499, time.monotonic() - started)
                raise
            except Exception as exc:
                self.health.record_failure(revision, time.monotonic())
                self._record(revision, 500, time.monotonic() - started)
                message = f"Revision {revision} failed mid-stream: {cause_message(exc)}"
                yield _sse(error_body(message, type_="server_error", code="server_error"))
            yield _sse("[DONE]")

        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={REVISION_HEADER: revision, "Cache-Control": "no-cache"},
        )

    # ---- OpenAI endpoints ----------------------------------------------------------------------------

    @api.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        """Legacy completions with ``n``, prompt lists, ``echo`` and ``logprobs`` (see CompletionRequest);
        choice ``i * n + j`` is prompt ``i``'s ``j``-th answer."""
        started = time.monotonic()
        req = self._parse_or_count(CompletionRequest, await self._guard(request), started)
        try:
            self._check_model(req.model)
            self._check_tokens(req.max_tokens, "max_tokens")
        except ApiError as exc:
            raise self._reject(exc, started) from None
        gens = req.to_generate_requests()
        completion_id = f"cmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        model = self.args.model_name
        envelope = {"id": completion_id, "object": "text_completion", "created": created, "model": model}
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            offsets = [0] * len(gens)

            def render(chunk: StreamChunk, first: bool) -> dict[str, Any]:
                text = (chunk.prompt_text or "") + chunk.text  # the prompt comes with an echo's first chunk
                logprobs = None
                if req.logprobs is not None:
                    entries = [*(chunk.prompt_logprobs or []), *(chunk.logprobs or [])]
                    logprobs = completion_logprobs(entries, offsets[chunk.index])
                    offsets[chunk.index] += text_length(entries)
                choice = {
                    "index": chunk.index,
                    "text": text,
                    "logprobs": logprobs,
                    "finish_reason": chunk.finish_reason,
                }
                return {**envelope, "choices": [choice]}

            return await self._stream(request, gens, req.n, render, envelope if include_usage else None)
        revision, results, (prompt, completion) = await self._generate_all(request, gens, req.n)
        choices = []
        for index, result in enumerate(results):
            logprobs = None
            if req.logprobs is not None:
                entries = [*(result.prompt_logprobs or []), *(result.logprobs or [])]
                logprobs = completion_logprobs(entries)
            text = (result.prompt_text or "") + result.text  # prompt_text is set with echo
            choices.append(
                {"index": index, "text": text, "logprobs": logprobs, "finish_reason": result.finish_reason}
            )
        body = {**envelope, "choices": choices, "usage": usage(prompt, completion)}
        return JSONResponse(body, headers={REVISION_HEADER: revision})

    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        """Chat completions with ``n`` and ``logprobs``/``top_logprobs`` (see ChatCompletionRequest)."""
        started = time.monotonic()
        req = self._parse_or_count(ChatCompletionRequest, await self._guard(request), started)
        try:
            self._check_model(req.model)
            self._check_tokens(
                req.token_budget(), "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
            )
        except ApiError as exc:
            raise self._reject(exc, started) from None
        gens = req.to_generate_requests()
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        model = self.args.model_name
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            envelope = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
            }

            def render(chunk: StreamChunk, first: bool) -> dict[str, Any]:
                delta: dict[str, Any] = {"content": chunk.text}
                if first:
                    delta["role"] = "assistant"
                choice: dict[str, Any] = {
                    "index": chunk.index,
                    "delta": delta,
                    "logprobs": chat_logprobs(chunk.logprobs or []) if req.logprobs else None,
                    "finish_reason": chunk.finish_reason,
                }
                return {**envelope, "choices": [choice]}

            return await self._stream(request, gens, req.n, render, envelope if include_usage else None)
        revision, results, (prompt, completion) = await self._generate_all(request, gens, req.n)
        body = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": index,
                    "message": {"role": "assistant", "content": result.text},
                    "logprobs": chat_logprobs(result.logprobs or []) if req.logprobs else None,
                    "finish_reason": result.finish_reason,
                }
                for index, result in enumerate(results)
            ],
            "usage": usage(prompt, completion),
        }
        return JSONResponse(body, headers={REVISION_HEADER: revision})

    @api.post("/v1/embeddings")
    async def embeddings(self, request: Request) -> Response:
        started = time.monotonic()
        req = self._parse_or_count(EmbeddingRequest, await self._guard(request), started)
        try:
            self._check_model(req.model)
            if not req.texts():
                raise bad_request("'input' must not be empty.", param="input")
        except ApiError as exc:
            raise self._reject(exc, started) from None
        revision, result = await self._embed(request, req.texts())
        data = [
            {"object": "embedding", "index": i, "embedding": encode_embedding(vec, req.encoding_format)}
            for i, vec in enumerate(result.embeddings)
        ]
        body = {
            "object": "list",
            "data": data,
            "model": self.args.model_name,
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
        }
        return JSONResponse(body, headers={REVISION_HEADER: revision})

    @api.get("/v1/models")
    async def models(self, request: Request) -> Response:
        await self._guard(request)
        entry = {"id": self.args.model_name, "object": "model", "created": self.created, "owned_by": "lmops"}
        return JSONResponse({"object": "list", "data": [entry]})

    # ---- the seeds' endpoints ------------------------------------------------------------------------

    @api.post("/generate")
    async def generate(self, request: Request) -> Response:
        started = time.monotonic()
        req = self._parse_or_count(SeedGenerateRequest, await self._guard(request), started)
        try:
            self._check_tokens(req.max_new_tokens, "max_new_tokens")
        except ApiError as exc:
            raise self._reject(exc, started) from None
        revision, result = await self._generate(request, req.to_generate_request())
        body = {**result.model_dump(exclude={"logprobs", "prompt_logprobs"}), "revision": revision}
        return JSONResponse(body, headers={REVISION_HEADER: revision})

    @api.post("/predict")
    async def predict(self, request: Request) -> Response:
        started = time.monotonic()
        texts = self._texts_or_count(await self._guard(request), started)
        revision, result, latency = await self._unary(request, "classify", ClassifyRequest(texts=texts))
        assert isinstance(result, ClassifyResult)
        self._record(revision, 200, latency, result.prompt_tokens)
        predictions = [
            {"label": scores[0].label, "score": scores[0].score, "scores": [s.model_dump() for s in scores]}
            for scores in result.predictions
        ]
        return JSONResponse(
            {"predictions": predictions, "revision": revision}, headers={REVISION_HEADER: revision}
        )

    @api.post("/embed")
    async def embed(self, request: Request) -> Response:
        started = time.monotonic()
        texts = self._texts_or_count(await self._guard(request), started)
        revision, result = await self._embed(request, texts)
        dims = len(result.embeddings[0]) if result.embeddings else 0
        body = {"embeddings": result.embeddings, "dimensions": dims, "revision": revision}
        return JSONResponse(body, headers={REVISION_HEADER: revision})

    @api.post("/v1/score")
    async def score(self, request: Request) -> Response:
        """Log-likelihood per text: ``{"input": str | [str], "model"?: str}`` -> ``data[i].log_likelihood``
        and ``data[i].tokens`` (tokens scored: all but the first); 400 on a revision that is not generate."""
        started = time.monotonic()
        req = self._parse_or_count(ScoreApiRequest, await self._guard(request), started)
        try:
            if req.model is not None:
                self._check_model(req.model)
            if not req.texts():
                raise bad_request("'input' must not be empty.", param="input")
        except ApiError as exc:
            raise self._reject(exc, started) from None
        revision, result, latency = await self._unary(request, "score", ScoreRequest(texts=req.texts()))
        assert isinstance(result, ScoreResult)
        scored = sum(result.token_counts)
        self._record(revision, 200, latency, scored)
        data = [
            {"object": "score", "index": i, "log_likelihood": ll, "tokens": n}
            for i, (ll, n) in enumerate(zip(result.log_likelihoods, result.token_counts, strict=True))
        ]
        body = {
            "object": "list",
            "model": self.args.model_name,
            "data": data,
            "usage": {"prompt_tokens": scored, "total_tokens": scored},
            "revision": revision,
        }
        return JSONResponse(body, headers={REVISION_HEADER: revision})

    async def _embed(self, request: Request, texts: list[str]) -> tuple[str, EmbedResult]:
        revision, result, latency = await self._unary(request, "embed", EmbedRequest(texts=texts))
        assert isinstance(result, EmbedResult)
        self._record(revision, 200, latency, result.prompt_tokens)
        return revision, result

    # ---- operations ----------------------------------------------------------------------------------

    @api.get("/healthz")
    async def healthz(self) -> Response:
        if self.config is None:
            return JSONResponse({"status": "not configured"}, status_code=503)
        revisions = served_revisions(self.config)
        health = self.health.snapshot(revisions, time.monotonic())
        return JSONResponse({"status": "ok", "replica": self.replica_id, "revisions": health})

    async def _aggregate(self) -> dict[str, Any]:
        """Flush this replica's counters, then read the sum over all replicas from the stats actor."""
        try:
            await self._flush()
            assert self.stats_actor is not None
            snapshot: dict[str, Any] = await self.stats_actor.snapshot.remote()
        except Exception as exc:
            raise ApiError(
                503,
                f"Stats actor unavailable: {cause_message(exc)}",
                type_="server_error",
                code="stats_unavailable",
            ) from None
        return snapshot

    @api.get("/stats")
    async def stats(self) -> Response:
        config = self._config()
        snapshot = await self._aggregate()
        totals = deltas_from_wire(snapshot["totals"])
        revisions = {rev: revision_json(c) for rev, c in sorted(totals.items())}
        health = snapshot["health"]
        for rev in served_revisions(config):
            revisions.setdefault(rev, revision_json(RevisionCounters()))
        for rev, state in health.items():
            if rev in revisions:
                revisions[rev].update(state)
        for rev, values in (await engine_metrics.read(self.args.model_name)).items():
            if rev in revisions:
                revisions[rev]["engine"] = values
        body = {
            "model": self.args.model_name,
            "epoch": snapshot["epoch"],
            "started_at": snapshot["started_at"],
            "now": time.time(),
            "router_replicas": snapshot["router_replicas"],
            "weights": dict(config.weights),
            "stable": config.stable,
            "fallback": config.fallback,
            "revisions": revisions,
        }
        return JSONResponse(body)

    @api.get("/metrics")
    async def metrics(self) -> Response:
        config = self._config()
        snapshot = await self._aggregate()
        text = render_prometheus(
            deltas_from_wire(snapshot["totals"]), dict(config.weights), snapshot["health"]
        )
        text += engine_metrics.render_prometheus(await engine_metrics.read(self.args.model_name))
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
