"""The analysis rules, table-driven: one window in, verdict and numbers out."""

from __future__ import annotations

import pytest

from lmops_operator.api.rollout_spec import AnalysisSpec
from lmops_operator.planning.analysis import analyse
from tests.unit.rollout_helpers import T0, metrics, snapshot

BASE = {"minRequests": 10, "maxErrorRate": 0.05}


@pytest.mark.parametrize(
    ("spec", "canary", "stable", "verdict", "words"),
    [
        (BASE, metrics(20, 0), metrics(100), "Pass", "20 requests, error rate 0.0%"),
        (BASE, metrics(20, 1), metrics(100), "Pass", "error rate 5.0%"),
        (BASE, metrics(20, 2), metrics(100), "Fail", "exceeds maxErrorRate"),
        (BASE, metrics(9, 0), metrics(100), "Inconclusive", "9 of 10 requests"),
        # Too few requests, but the errors alone already break the threshold at minRequests.
        (BASE, metrics(3, 1), metrics(100), "Fail", "1/3"),
        (BASE, metrics(0, 0), metrics(100), "Inconclusive", "0 of 10"),
        ({**BASE, "minRequests": 0}, metrics(0, 0), metrics(100), "Pass", "minRequests is 0"),
        (BASE, metrics(20, 0, healthy=False), metrics(100), "Fail", "unhealthy"),
        ({**BASE, "maxP95LatencyMilliseconds": 500}, metrics(20, 0, 0.3), metrics(100), "Pass", "p95"),
        (
            {**BASE, "maxP95LatencyMilliseconds": 500},
            metrics(20, 0, 2.0),
            metrics(100),
            "Fail",
            "p95 latency",
        ),
        ({**BASE, "maxLatencyRatio": 2}, metrics(20, 0, 0.4), metrics(100, 0, 0.4), "Pass", "p95"),
        ({**BASE, "maxLatencyRatio": 2}, metrics(20, 0, 2.0), metrics(100, 0, 0.2), "Fail", "x the stable"),
        # The ratio is not judged while the stable revision itself has too few requests.
        ({**BASE, "maxLatencyRatio": 2}, metrics(20, 0, 2.0), metrics(5, 0, 0.2), "Pass", "p95"),
    ],
)
def test_rules(spec: dict, canary, stable, verdict: str, words: str) -> None:  # type: ignore[no-untyped-def]
    result = analyse(AnalysisSpec.model_validate(spec), "b", "a", snapshot(T0, a=stable, b=canary), 30.0, T0)
    assert result.verdict == verdict
    assert words in result.message
    assert result.requests == canary.requests and result.errors == canary.errors
    assert result.stable_revision == "a" and result.stable_requests == stable.requests
    assert result.min_requests == spec["minRequests"] and result.max_error_rate == spec["maxErrorRate"]
    assert result.window_seconds == 30.0


def test_values_recorded() -> None:
    spec = AnalysisSpec.model_validate({"maxP95LatencyMilliseconds": 1000, "minRequests": 1})
    result = analyse(spec, "b", "a", snapshot(T0, a=metrics(10, 1, 0.2), b=metrics(40, 2, 0.7)), None, T0)
    assert result.error_rate == 0.05
    assert result.p95_latency_milliseconds is not None and 500 < result.p95_latency_milliseconds <= 1000
    assert result.stable_error_rate == 0.1
    assert result.max_p95_latency_milliseconds == 1000
    assert result.time == T0


def test_time_to_first_token_gate_on_vllm_canaries() -> None:
    """Mean engine TTFT in the window fails a vLLM canary; a canary without engine metrics is not judged."""
    from dataclasses import replace

    spec = AnalysisSpec.model_validate({**BASE, "maxTimeToFirstTokenMilliseconds": 200})
    fast = replace(metrics(20), ttft_sum=20 * 0.1, ttft_count=20)
    slow = replace(metrics(20), ttft_sum=20 * 0.5, ttft_count=20)
    passed = analyse(spec, "b", "a", snapshot(T0, a=metrics(100), b=fast), 30.0, T0)
    assert passed.verdict == "Pass" and passed.mean_time_to_first_token_milliseconds == 100.0
    failed = analyse(spec, "b", "a", snapshot(T0, a=metrics(100), b=slow), 30.0, T0)
    assert failed.verdict == "Fail" and "time to first token 500 ms" in failed.message
    assert failed.max_time_to_first_token_milliseconds == 200
    unmeasured = analyse(spec, "b", "a", snapshot(T0, a=metrics(100), b=metrics(20)), 30.0, T0)
    assert unmeasured.verdict == "Pass" and unmeasured.mean_time_to_first_token_milliseconds is None
    # Windows are deltas of the engine's cumulative sums, and survive the status round trip.
    older = snapshot(T0, b=replace(metrics(10), ttft_sum=1.0, ttft_count=10))
    newer = snapshot(T0, b=replace(metrics(30), ttft_sum=11.0, ttft_count=30))
    window = newer.delta(type(older).from_baseline(older.baseline(["b"]))).get("b")
    assert (window.ttft_count, window.mean_ttft_seconds) == (20, 0.5)
