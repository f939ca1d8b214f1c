"""Retry and classification rules of Router calls, with plain coroutines standing in for Serve handles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from lmops_runtime.config import RouterConfig
from lmops_runtime.protocol import InvalidRequestError
from lmops_runtime.router.calls import (
    Attempt,
    ReplicaWaitTimeout,
    RevisionWithdrawn,
    call_with_retry,
    cause_message,
    open_stream,
    wait_assigned,
)
from lmops_runtime.router.dispatch import Dispatcher
from lmops_runtime.router.errors import ApiError
from lmops_runtime.router.telemetry import Telemetry


def _retry_to(target: str | None) -> Callable[[str], str | None]:
    return lambda failed: target if failed != target else None


async def test_server_fault_is_retried_once_and_counted_on_both_revisions() -> None:
    attempts: list[Attempt] = []
    calls: list[str] = []

    async def call(revision: str, budget: float) -> str:
        calls.append(revision)
        if revision == "canary":
            raise RuntimeError("CUDA error")
        return f"ok from {revision}"

    revision, result = await call_with_retry("canary", _retry_to("stable"), call, 1e9, attempts.append)
    assert (revision, result, calls) == ("stable", "ok from stable", ["canary", "stable"])
    assert [(a.revision, a.code) for a in attempts] == [("canary", 500), ("stable", 200)]


async def test_invalid_request_is_a_400_and_never_retried() -> None:
    calls: list[str] = []

    async def call(revision: str, budget: float) -> None:
        calls.append(revision)
        raise InvalidRequestError("prompt too long for this model")

    with pytest.raises(ApiError) as err:
        await call_with_retry("canary", _retry_to("stable"), call, 1e9, lambda a: None)
    assert err.value.status == 400 and err.value.message == "prompt too long for this model"
    assert calls == ["canary"]


async def test_when_no_revision_can_serve_the_client_gets_a_5xx() -> None:
    async def fault(revision: str, budget: float) -> None:
        raise RuntimeError("down")

    with pytest.raises(ApiError) as err:
        await call_with_retry("canary", _retry_to("stable"), fault, 1e9, lambda a: None)
    assert err.value.status == 500 and "stable" in err.value.message

    async def cold(revision: str, budget: float) -> None:
        raise ReplicaWaitTimeout

    with pytest.raises(ApiError) as err:
        await call_with_retry("zero", _retry_to(None), cold, 1e9, lambda a: None)
    assert err.value.status == 503 and err.value.code == "replica_wait_timeout"
    assert err.value.headers["Retry-After"]


class _SlowAssignment:
    """Mimics a DeploymentResponse whose replica assignment never completes (no replica yet)."""

    def __init__(self) -> None:
        self.cancelled = False

    async def _fetch_future_result_async(self) -> None:
        await asyncio.sleep(3600)

    def cancel(self) -> None:
        self.cancelled = True


async def test_wait_assigned_bounds_the_queue_wait_and_cancels() -> None:
    response = _SlowAssignment()
    with pytest.raises(ReplicaWaitTimeout):
        await wait_assigned(response, 0.05)
    assert response.cancelled


async def test_a_withdrawn_revision_ends_the_wait_at_once_and_cancels() -> None:
    response = _SlowAssignment()
    withdrawn = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, withdrawn.set)
    started = asyncio.get_running_loop().time()
    with pytest.raises(RevisionWithdrawn):
        await wait_assigned(response, 60, withdrawn)
    assert asyncio.get_running_loop().time() - started < 5
    assert response.cancelled


async def test_a_call_waiting_on_a_withdrawn_revision_is_served_by_the_retry_and_not_counted() -> None:
    """The canary's application is deleted while a call waits for its replica: the call moves on to the
    stable revision with the budget left, and the canary is not charged with a failure it never saw."""
    attempts: list[Attempt] = []

    async def call(revision: str, budget: float) -> str:
        if revision == "canary":
            raise RevisionWithdrawn
        assert budget > 100
        return f"ok from {revision}"

    loop = asyncio.get_running_loop()
    revision, result = await call_with_retry(
        "canary", _retry_to("stable"), call, loop.time() + 120, attempts.append
    )
    assert (revision, result) == ("stable", "ok from stable")
    assert [(a.revision, a.code) for a in attempts] == [("stable", 200)]

    with pytest.raises(ApiError) as err:
        await call_with_retry("canary", _retry_to(None), call, 1e9, attempts.append)
    assert err.value.status == 503 and err.value.code == "revision_withdrawn"


async def test_open_stream_retries_before_the_first_chunk_only() -> None:
    attempts: list[Attempt] = []

    async def rest() -> AsyncIterator[str]:
        yield "second"

    async def start(revision: str, budget: float) -> tuple[str, AsyncIterator[str]]:
        if revision == "canary":
            raise RuntimeError("boom")
        return "first", rest()

    revision, first, tail, _ = await open_stream("canary", _retry_to("stable"), start, 1e9, attempts.append)
    assert (revision, first) == ("stable", "first")
    assert [chunk async for chunk in tail] == ["second"]
    assert [(a.revision, a.code) for a in attempts] == [("canary", 500)]  # success is recorded at the end


def test_cause_message_unwraps_remote_errors() -> None:
    class Wrapped(Exception):
        def __init__(self, cause: BaseException) -> None:
            super().__init__("Traceback ... long remote text")
            self.cause = cause

    assert cause_message(Wrapped(ValueError("the real reason"))) == "the real reason"
    assert cause_message(RuntimeError()) == "RuntimeError"


def test_a_revision_leaving_the_config_wakes_its_waiting_calls_only() -> None:
    dispatcher = Dispatcher(Telemetry("lm", "replica-1", dict, lambda live: None))
    for revision in ("canary", "stable"):  # as ``_handle`` leaves them after a first call to each
        dispatcher.handles[revision] = object()
        dispatcher.withdrawn[revision] = asyncio.Event()
    canary, stable = dispatcher.withdrawn["canary"], dispatcher.withdrawn["stable"]
    dispatcher.configure(RouterConfig(weights={"stable": 100}, stable="stable"))
    assert canary.is_set() and not stable.is_set()
    assert set(dispatcher.handles) == set(dispatcher.withdrawn) == {"stable"}
