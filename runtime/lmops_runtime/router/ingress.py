"""The Router Serve deployment: a thin HTTP ingress whose endpoints delegate.

``Intake`` admits and parses requests, ``Dispatcher`` routes, retries and streams, the ``serving`` classes
build each endpoint's typed response and ``Telemetry`` counts and answers /stats and /metrics. This module
only wires them to FastAPI and Serve (``reconfigure``) and renders errors in OpenAI's format.
No ``from __future__ import annotations`` here: Serve's ingress re-wraps the endpoint methods, and FastAPI
must see ``Request`` as a class, not a string.
"""

import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from ray import serve

from lmops_runtime import config as contract
from lmops_runtime.contract import METRICS_PATH, STATS_PATH
from lmops_runtime.router.dispatch import Dispatcher
from lmops_runtime.router.errors import ApiError, error_body
from lmops_runtime.router.intake import Intake
from lmops_runtime.router.serving import (
    ServingChat,
    ServingCompletion,
    ServingEmbedding,
    ServingModels,
    ServingSeeds,
)
from lmops_runtime.router.telemetry import Telemetry
from lmops_runtime.router.traffic import served_revisions

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
        context = serve.get_replica_context()
        self.replica_id = context.replica_id.unique_id if context else uuid.uuid4().hex
        self.telemetry = Telemetry(
            context.app_name if context else contract.ROUTER_APP,
            self.replica_id,
            health=lambda: self.dispatch.health_report(),
            on_live=lambda live: self.intake.set_live_routers(live),
        )
        self.dispatch = Dispatcher(self.telemetry)
        self.intake = Intake(self.args.model_name, self.dispatch, self.telemetry)
        self.completion = ServingCompletion(self.intake, self.dispatch)
        self.chat = ServingChat(self.intake, self.dispatch)
        self.embedding = ServingEmbedding(self.intake, self.dispatch)
        self.model_list = ServingModels(self.intake, self.dispatch)
        self.seeds = ServingSeeds(self.intake, self.dispatch)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply a RouterConfig: weights, limits and keys change in place, no replica restart."""
        config = contract.RouterConfig.model_validate(user_config)
        self.dispatch.configure(config)
        self.intake.configure(config)
        self.telemetry.ensure_pusher()

    # ---- OpenAI endpoints --------------------------------------------------------------------------------

    @api.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        return await self.completion.create(request)

    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        return await self.chat.create(request)

    @api.post("/v1/embeddings")
    async def embeddings(self, request: Request) -> Response:
        return await self.embedding.create(request)

    @api.get("/v1/models")
    async def models(self, request: Request) -> Response:
        return await self.model_list.list(request)

    # ---- the seeds' endpoints ----------------------------------------------------------------------------

    @api.post("/generate")
    async def generate(self, request: Request) -> Response:
        return await self.seeds.generate(request)

    @api.post("/predict")
    async def predict(self, request: Request) -> Response:
        return await self.seeds.predict(request)

    @api.post("/embed")
    async def embed(self, request: Request) -> Response:
        return await self.embedding.embed(request)

    @api.post("/v1/score")
    async def score(self, request: Request) -> Response:
        return await self.seeds.score(request)

    # ---- operations --------------------------------------------------------------------------------------

    @api.get("/healthz")
    async def healthz(self) -> Response:
        if self.dispatch.current is None:
            return JSONResponse({"status": "not configured"}, status_code=503)
        health = self.dispatch.health_report()
        return JSONResponse({"status": "ok", "replica": self.replica_id, "revisions": health})

    @api.get(STATS_PATH)
    async def stats(self) -> Response:
        config = self.dispatch.config()
        body = await self.telemetry.stats(self.args.model_name, config, served_revisions(config))
        return JSONResponse(body.model_dump(mode="json"))

    @api.get(METRICS_PATH)
    async def metrics(self) -> Response:
        text = await self.telemetry.prometheus(self.args.model_name, self.dispatch.config())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
