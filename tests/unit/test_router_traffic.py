"""Traffic splitting, sticky routing, circuit breaking and retry targets (pure, no Ray)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from lmops_runtime.config import RouterConfig
from lmops_runtime.router.traffic import (
    HealthTracker,
    choose_revision,
    pick_weighted,
    retry_revision,
    served_revisions,
    sticky_point,
)


def _split(weights: dict[str, int], n: int, seed: int = 7) -> Counter[str | None]:
    rng = random.Random(seed)
    return Counter(pick_weighted(weights, rng.random()) for _ in range(n))


@pytest.mark.parametrize(("weights", "n"), [({"a": 90, "b": 10}, 10_000), ({"a": 80, "b": 20}, 10_000)])
def test_weighted_split_is_within_binomial_tolerance(weights: dict[str, int], n: int) -> None:
    counts = _split(weights, n)
    for rev, weight in weights.items():
        p = weight / 100
        sigma = (n * p * (1 - p)) ** 0.5
        assert abs(counts[rev] - n * p) < 4 * sigma, (rev, counts)


def test_extreme_weights_route_everything() -> None:
    assert _split({"a": 100, "b": 0}, 2000) == Counter({"a": 2000})
    assert _split({"a": 0, "b": 100}, 2000) == Counter({"b": 2000})
    assert pick_weighted({"a": 0}, 0.5) is None


def test_split_does_not_depend_on_dict_order() -> None:
    points = [i / 1000 for i in range(1000)]
    assert [pick_weighted({"a": 30, "b": 70}, p) for p in points] == [
        pick_weighted({"b": 70, "a": 30}, p) for p in points
    ]


def test_sticky_points_are_stable_and_spread() -> None:
    assert sticky_point("user-1") == sticky_point("user-1")
    assert 0.0 <= sticky_point("x") < 1.0
    revs = Counter(pick_weighted({"a": 50, "b": 50}, sticky_point(f"user-{i}")) for i in range(4000))
    assert 1800 < revs["a"] < 2200


def _config(**kw: object) -> RouterConfig:
    base: dict[str, object] = {"weights": {"stable": 90, "canary": 10}, "stable": "stable", "fallback": "old"}
    base.update(kw)
    return RouterConfig.model_validate(base)


def test_served_revisions_include_stable_and_fallback() -> None:
    assert served_revisions(_config(weights={"canary": 100})) == ["canary", "old", "stable"]


def test_breaker_opens_after_threshold_and_half_opens_after_cooldown() -> None:
    health = HealthTracker(threshold=3, cooldown_s=5.0)
    for t in range(2):
        health.record_failure("r", float(t))
    assert health.is_healthy("r", 2.0)
    health.record_failure("r", 2.0)
    assert not health.is_healthy("r", 3.0)
    assert health.is_healthy("r", 7.0)  # one probe may go through
    health.record_failure("r", 7.0)
    assert not health.is_healthy("r", 8.0)
    health.record_success("r")
    assert health.is_healthy("r", 8.0) and health.failures("r") == 0


def test_unhealthy_stable_hands_traffic_to_fallback_and_canary_to_stable() -> None:
    config = _config()
    health = HealthTracker(threshold=1, cooldown_s=100.0)
    stable_point, canary_point = 0.99, 0.01  # "canary" sorts first: [0, 0.1) is canary
    assert choose_revision(config, canary_point, health, 0.0) == "canary"
    assert choose_revision(config, stable_point, health, 0.0) == "stable"
    health.record_failure("canary", 0.0)
    assert choose_revision(config, canary_point, health, 1.0) == "stable"
    health.record_failure("stable", 0.0)
    assert choose_revision(config, stable_point, health, 1.0) == "old"
    health.record_failure("old", 0.0)
    assert choose_revision(config, stable_point, health, 1.0) == "stable"


def test_retry_goes_to_stable_then_fallback() -> None:
    config = _config()
    health = HealthTracker(threshold=1, cooldown_s=100.0)
    assert retry_revision(config, "canary", health, 0.0) == "stable"
    assert retry_revision(config, "stable", health, 0.0) == "old"
    no_fallback = _config(fallback=None)
    assert retry_revision(no_fallback, "stable", health, 0.0) == "canary"
    # alone: retried on itself (another replica of the same deployment)
    assert retry_revision(_config(weights={"stable": 100}, fallback=None), "stable", health, 0.0) == "stable"
    health.record_failure("stable", 0.0)
    assert retry_revision(config, "canary", health, 1.0) == "old"
