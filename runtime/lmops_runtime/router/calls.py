"""Calling ModelServer revisions through Serve handles: bounded waits for a replica, retry, classification.

Kept apart from the HTTP layer so the retry and failover rules read in one place.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lmops_runtime.protocol import InvalidRequestError
from lmops_runtime.router.errors import ApiError, bad_request


class ReplicaWaitTimeout(Exception):
    """No replica of the revision took the call in time (scaled to zero and still starting, or saturated)."""


class RevisionWithdrawn(Exception):
    """The Router stopped serving the revision while the call waited for one of its replicas.

    The serve config that drops a revision from the Router (a canary rolled back, an old revision retired)
    also deletes its application: Serve stops its replicas, and a call queued in the handle for one would
    wait for a replica that never comes, until the whole wait budget is spent and the retry has none left.
    """


def cause_message(exc: BaseException) -> str:
    """The user-facing message of an exception raised in a replica, without Ray's remote traceback."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    return str(exc.args[0]) if exc.args else type(exc).__name__


async def wait_assigned(response: Any, timeout_s: float, withdrawn: asyncio.Event | None = None) -> None:
    """Wait until Serve has assigned the call to a replica, at most ``timeout_s``, and only while
    ``withdrawn`` is not set (RevisionWithdrawn then: the revision's replicas are going away).

    A handle call to a deployment at zero replicas queues until the autoscaler starts one; bounding only
    this phase (not the generation that follows) is what ``scale_from_zero_timeout_s`` means. Serve exposes
    the assignment as the response's replica-result future; the public ``await`` would bound the whole call.
    """
    assigned = asyncio.ensure_future(response._fetch_future_result_async())
    gone = asyncio.ensure_future((withdrawn or asyncio.Event()).wait())
    try:
        done, _ = await asyncio.wait(
            {assigned, gone}, timeout=max(timeout_s, 0.001), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        gone.cancel()
        assigned.cancel()  # a no-op once done; otherwise the wait ended (or was cancelled) without a replica
    if assigned in done:
        assigned.result()  # an assignment failure (the deployment is unavailable) is the call's failure
        return
    response.cancel()
    raise RevisionWithdrawn if gone in done else ReplicaWaitTimeout


@dataclass
class Attempt:
    """The outcome of one call attempt on one revision, for counters and health."""

    revision: str
    code: int
    latency_s: float


OnAttempt = Callable[[Attempt], None]


async def call_with_retry(
    first: str,
    retry_target: Callable[[str], str | None],
    call: Callable[[str, float], Awaitable[Any]],
    deadline: float,
    on_attempt: OnAttempt,
) -> tuple[str, Any]:
    """Run ``call(revision, wait_budget_s)`` on ``first``; on a server fault retry once on ``retry_target``.

    An InvalidRequestError is the client's fault: it becomes a 400 and is never retried. The wait budget
    for a replica is shared by both attempts (one deadline), so a cold revision never doubles the wait.
    """
    revision: str | None = first
    last_error: ApiError | None = None
    for _ in range(2):
        assert revision is not None
        started = time.monotonic()
        try:
            result = await call(revision, deadline - started)
        except InvalidRequestError as exc:
            on_attempt(Attempt(revision, 400, time.monotonic() - started))
            raise bad_request(cause_message(exc)) from None
        except RevisionWithdrawn:
            # Never reached the revision: not its failure, and the retry target now comes from the new config.
            last_error = ApiError(
                503,
                f"Revision {revision} stopped being served while the call waited for it. Retry.",
                type_="server_error",
                code="revision_withdrawn",
                headers={"Retry-After": "1"},
            )
        except ReplicaWaitTimeout:
            on_attempt(Attempt(revision, 503, time.monotonic() - started))
            last_error = ApiError(
                503,
                f"Revision {revision} has no replica ready yet (scaling from zero or overloaded); "
                "the wait for one timed out. Retry later.",
                type_="server_error",
                code="replica_wait_timeout",
                headers={"Retry-After": "5"},
            )
        except ApiError:
            raise
        except Exception as exc:
            on_attempt(Attempt(revision, 500, time.monotonic() - started))
            last_error = ApiError(
                500,
                f"Revision {revision} failed to serve the request: {cause_message(exc)}",
                type_="server_error",
                code="server_error",
            )
        else:
            on_attempt(Attempt(revision, 200, time.monotonic() - started))
            return revision, result
        revision = retry_target(revision)
        if revision is None:
            break
    assert last_error is not None
    raise last_error


async def open_stream(
    first: str,
    retry_target: Callable[[str], str | None],
    start: Callable[[str, float], Awaitable[tuple[Any, AsyncIterator[Any]]]],
    deadline: float,
    on_attempt: OnAttempt,
) -> tuple[str, Any, AsyncIterator[Any], float]:
    """Open a stream and read its first chunk, retrying like ``call_with_retry``.

    Only a failure before the first chunk can be retried: after that the client has bytes already.
    Success is recorded by the caller when the stream ends (it knows the tokens and the full latency).
    Returns (revision, first chunk, the rest, start time of the winning attempt).
    """
    failures: list[Attempt] = []

    def note(attempt: Attempt) -> None:
        if attempt.code != 200:
            on_attempt(attempt)
            failures.append(attempt)

    state: dict[str, Any] = {}

    async def attempt(revision: str, budget: float) -> None:
        state["started"] = time.monotonic()
        first_chunk, rest = await start(revision, budget)
        state["first"], state["rest"] = first_chunk, rest

    revision, _ = await call_with_retry(first, retry_target, attempt, deadline, note)
    return revision, state["first"], state["rest"], float(state["started"])
