"""Revision pinning and the scoring request: the pure parts (which revision, which retry, which body)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lmops_runtime.config import RouterConfig
from lmops_runtime.router.calls import Attempt, call_with_retry
from lmops_runtime.router.errors import ApiError
from lmops_runtime.router.schemas import ScoreApiRequest
from lmops_runtime.router.traffic import HealthTracker, no_retry, pinned_revision, retry_revision

CONFIG = RouterConfig.model_validate(
    {"weights": {"stable": 100, "canary": 0}, "stable": "stable", "fallback": "warm"}
)


@pytest.mark.parametrize("revision", ["stable", "canary", "warm"])
def test_any_configured_revision_can_be_pinned_weight_zero_included(revision: str) -> None:
    assert pinned_revision(CONFIG, revision) == revision


@pytest.mark.parametrize("revision", ["other", "", "Stable", "canary "])
def test_an_unknown_revision_is_refused_naming_the_known_ones(revision: str) -> None:
    with pytest.raises(ValueError, match="Unknown revision") as info:
        pinned_revision(CONFIG, revision)
    assert "canary, stable, warm" in str(info.value)


def test_a_pin_ignores_health_while_the_split_would_steer_around() -> None:
    health = HealthTracker(threshold=1)
    health.record_failure("canary", now=0.0)
    assert not health.is_healthy("canary", 1.0)
    assert pinned_revision(CONFIG, "canary") == "canary"
    assert retry_revision(CONFIG, "canary", health, 1.0) == "stable"  # what an unpinned call would do
    assert no_retry("canary") is None


async def test_a_pinned_failure_is_reported_as_is_not_retried_elsewhere() -> None:
    attempts: list[Attempt] = []
    calls: list[str] = []

    async def call(revision: str, budget: float) -> str:
        calls.append(revision)
        raise RuntimeError("CUDA error")

    with pytest.raises(ApiError) as info:
        await call_with_retry("canary", no_retry, call, 1e9, attempts.append)
    assert info.value.status == 500 and "Revision canary failed" in info.value.message
    assert calls == ["canary"]
    assert [(a.revision, a.code) for a in attempts] == [("canary", 500)]


async def test_a_pinned_success_is_counted_on_its_revision() -> None:
    attempts: list[Attempt] = []

    async def call(revision: str, budget: float) -> str:
        return revision

    assert await call_with_retry("canary", no_retry, call, 1e9, attempts.append) == ("canary", "canary")
    assert [(a.revision, a.code) for a in attempts] == [("canary", 200)]


def test_score_request_takes_one_text_or_a_list_and_nothing_else() -> None:
    assert ScoreApiRequest.model_validate({"input": "abc"}).texts() == ["abc"]
    req = ScoreApiRequest.model_validate({"model": "m", "input": ["a", "b"]})
    assert req.texts() == ["a", "b"] and req.model == "m"
    for bad in ({}, {"input": 3}, {"input": ["a"], "temperature": 1.0}, {"input": [1, 2]}):
        with pytest.raises(ValidationError):
            ScoreApiRequest.model_validate(bad)
