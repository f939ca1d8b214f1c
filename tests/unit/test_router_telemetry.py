"""A Router replica whose stats actor handle stops answering recovers instead of hanging /stats for good.

Seen on the real node (tests/cluster): the Router's first handle pointed at an actor that never answered, so
every /stats and /metrics waited until the client gave up and the operator's canary analysis never saw a
metric. A call now fails after ``STATS_CALL_TIMEOUT_S`` and the next push resolves the actor again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lmops_runtime.router import stats_actor
from lmops_runtime.router import telemetry as tm
from lmops_runtime.router.errors import ApiError


class _Method:
    def __init__(self, result: Any) -> None:
        self.result = result
        self.calls = 0

    def remote(self, *args: Any) -> Any:
        self.calls += 1
        return self.result()


class _Actor:
    """A stats actor handle whose calls return ``push()`` / ``snapshot()`` (coroutines; one that never ends
    stands for a call that never answers)."""

    def __init__(self, push: Any, snapshot: Any) -> None:
        self.push = _Method(push)
        self.snapshot = _Method(snapshot)


async def _never() -> Any:
    await asyncio.Event().wait()


async def _one_live_router() -> int:
    return 1


async def _snapshot() -> dict[str, Any]:
    return {"epoch": "e", "started_at": 0.0, "router_replicas": 1, "totals": {}, "health": {}}


async def test_a_stats_actor_that_never_answers_fails_fast_and_is_resolved_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tm, "STATS_CALL_TIMEOUT_S", 0.2)
    stuck, healthy = _Actor(_never, _never), _Actor(_one_live_router, _snapshot)
    handles = iter([stuck, healthy])
    monkeypatch.setattr(stats_actor, "get_or_create", lambda app: next(handles))
    telemetry = tm.Telemetry("lm", "r1", health=lambda: {}, on_live=lambda n: None)
    telemetry.record("a", 200, 0.01, prompt=3, completion=5)

    with pytest.raises(ApiError) as failed:
        await asyncio.wait_for(telemetry.stats("m", _config(), ["a"]), 5)
    assert failed.value.status == 503 and telemetry.stats_actor is None
    assert telemetry.deltas["a"].requests == 1  # kept for the next push, not lost with the stuck call

    body = await asyncio.wait_for(telemetry.stats("m", _config(), ["a"]), 5)
    assert healthy.push.calls == 1 and body.router_replicas == 1


def _config() -> Any:
    from lmops_runtime import config

    return config.RouterConfig.model_validate({"weights": {"a": 100}, "stable": "a"})
