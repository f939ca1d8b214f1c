"""Request intake, shared by every model endpoint: API keys, rate limit, body size, parsing, model checks.

A request rejected here never reaches a revision; it is counted under ``stats.NO_REVISION`` so /stats
and /metrics still show the 401s, 413s, 429s and 400s a client got.
No ``from __future__ import annotations``: ``Request`` is used in signatures FastAPI may inspect.
"""

import json
import time
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from lmops_runtime import config as contract
from lmops_runtime.router.dispatch import Dispatcher
from lmops_runtime.router.errors import ApiError, bad_request
from lmops_runtime.router.limits import ApiKeys, RateLimiter, rate_limited
from lmops_runtime.router.schemas import TextsRequest
from lmops_runtime.router.stats import NO_REVISION
from lmops_runtime.router.telemetry import Telemetry

M = TypeVar("M", bound=BaseModel)


def validation_message(exc: ValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    return f"Invalid value for '{param}': {first['msg']}" if param else first["msg"], param


def parse(model: type[M], body: bytes) -> M:
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
        message, param = validation_message(exc)
        raise bad_request(message, param=param) from None


def _too_large(config: contract.RouterConfig) -> ApiError:
    return ApiError(
        413, f"Request body exceeds the limit of {config.max_request_bytes} bytes.", code="request_too_large"
    )


class Intake:
    """Admits requests for the model ``model_name`` under the limits of the current RouterConfig."""

    def __init__(self, model_name: str, dispatch: Dispatcher, telemetry: Telemetry) -> None:
        self.model_name = model_name
        self.dispatch = dispatch
        self.telemetry = telemetry
        self.api_keys: ApiKeys | None = None
        self.limiter: RateLimiter | None = None

    def configure(self, config: contract.RouterConfig) -> None:
        """New keys file or rate limit take effect at once; an unchanged one keeps its state."""
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

    def set_live_routers(self, live: int) -> None:
        """Each Router replica admits its share of the rate limit."""
        if self.limiter is not None:
            self.limiter.share = live

    async def admit(self, request: Request) -> bytes:
        """Auth, rate limit and size checks; returns the body."""
        config = self.dispatch.config()
        self.telemetry.ensure_pusher()
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
                raise _too_large(config)
            body = await request.body()
            if len(body) > config.max_request_bytes:
                raise _too_large(config)
        except ApiError as exc:
            self.telemetry.record(NO_REVISION, exc.status, time.monotonic() - now)
            raise
        return body

    def reject(self, exc: ApiError, started: float) -> ApiError:
        self.telemetry.record(NO_REVISION, exc.status, time.monotonic() - started)
        return exc

    async def read(self, request: Request, model: type[M]) -> tuple[M, float]:
        """Admit, then parse the body as ``model``; returns it with the time the call started."""
        started = time.monotonic()
        body = await self.admit(request)
        try:
            return parse(model, body), started
        except ApiError as exc:
            raise self.reject(exc, started) from None

    async def read_texts(self, request: Request) -> list[str]:
        req, started = await self.read(request, TextsRequest)
        try:
            return req.all_texts()
        except ValueError as exc:
            raise self.reject(bad_request(str(exc)), started) from None

    def check_model(self, model: str) -> None:
        if model != self.model_name:
            raise ApiError(
                404,
                f"The model '{model}' does not exist; this endpoint serves '{self.model_name}'.",
                param="model",
                code="model_not_found",
            )

    def check_tokens(self, value: int | None, param: str) -> None:
        limit = self.dispatch.config().max_tokens_limit
        if value is not None and value > limit:
            raise bad_request(
                f"'{param}' is {value}, above this model's limit of {limit}.",
                param=param,
                code="max_tokens_exceeded",
            )
