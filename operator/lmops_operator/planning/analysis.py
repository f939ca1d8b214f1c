"""Canary analysis: one window of Router counters in, a verdict with its numbers out. Pure.

Rules, in order (the first that decides wins):
1. The Router's circuit breaker is open for the canary: Fail. Its calls already fail over to stable, so
   the canary would otherwise starve under minRequests and look merely inconclusive.
2. Errors so far exceed maxErrorRate even if every missing request up to minRequests succeeded: Fail.
   (With at least minRequests this is simply the error rate.)
3. Fewer than minRequests canary requests: Inconclusive (the window keeps growing).
4. p95 latency above maxP95LatencyMilliseconds: Fail.
5. p95 latency above maxLatencyRatio times the stable revision's p95 in the same window (when the stable
   revision also saw minRequests): Fail.
6. Mean engine time to first token above maxTimeToFirstTokenMilliseconds (vLLM canaries, which report it):
   Fail.
7. Otherwise Pass.
"""

from __future__ import annotations

from datetime import datetime

from lmops_operator.api.rollout_spec import AnalysisSpec
from lmops_operator.api.status import AnalysisResult
from lmops_operator.planning.metrics import MetricsSnapshot


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def analyse(
    spec: AnalysisSpec,
    canary: str,
    stable: str | None,
    window: MetricsSnapshot,
    window_seconds: float | None,
    now: datetime,
) -> AnalysisResult:
    """Judge the canary on one window (``window`` holds deltas, not totals)."""
    c = window.get(canary)
    s = window.get(stable) if stable else None
    p95 = _ms(window.p95_seconds(canary)) if c.requests else None
    stable_p95 = _ms(window.p95_seconds(stable)) if stable and s and s.requests else None
    ttft = _ms(c.mean_ttft_seconds)
    verdict, message = _judge(
        spec, canary, c.requests, c.errors, c.healthy, p95, s.requests if s else 0, stable_p95
    )
    limit = spec.max_time_to_first_token_milliseconds
    if verdict == "Pass" and limit is not None and ttft is not None and ttft > limit:
        verdict = "Fail"
        message = f"mean time to first token {ttft:.0f} ms exceeds maxTimeToFirstTokenMilliseconds {limit}"
    return AnalysisResult(
        revision=canary,
        requests=c.requests,
        errors=c.errors,
        error_rate=round(c.error_rate, 6),
        p95_latency_milliseconds=p95,
        window_seconds=None if window_seconds is None else round(max(0.0, window_seconds), 3),
        stable_revision=stable,
        stable_requests=s.requests if s else 0,
        stable_error_rate=round(s.error_rate, 6) if s and s.requests else None,
        stable_p95_latency_milliseconds=stable_p95,
        mean_time_to_first_token_milliseconds=ttft,
        max_time_to_first_token_milliseconds=spec.max_time_to_first_token_milliseconds,
        max_error_rate=spec.max_error_rate,
        max_p95_latency_milliseconds=spec.max_p95_latency_milliseconds,
        max_latency_ratio=spec.max_latency_ratio,
        min_requests=spec.min_requests,
        verdict=verdict,
        message=message,
        time=now,
    )


def _judge(
    spec: AnalysisSpec,
    canary: str,
    requests: int,
    errors: int,
    healthy: bool,
    p95: float | None,
    stable_requests: int,
    stable_p95: float | None,
) -> tuple[str, str]:
    if not healthy:
        return "Fail", f"the Router marked {canary} unhealthy (consecutive server errors)"
    floor = max(requests, spec.min_requests)
    if floor > 0 and errors / floor > spec.max_error_rate:
        return (
            "Fail",
            f"error rate {errors}/{requests} = {errors / max(requests, 1):.1%} exceeds "
            f"maxErrorRate {spec.max_error_rate:.1%}",
        )
    if requests < spec.min_requests:
        return "Inconclusive", f"{requests} of {spec.min_requests} requests needed"
    if requests == 0:
        return "Pass", "no canary requests and minRequests is 0"
    limit = spec.max_p95_latency_milliseconds
    if limit is not None and p95 is not None and p95 > limit:
        return "Fail", f"p95 latency {p95:.0f} ms exceeds maxP95LatencyMilliseconds {limit}"
    ratio = spec.max_latency_ratio
    if (
        ratio is not None
        and p95 is not None
        and stable_p95
        and stable_requests >= max(spec.min_requests, 1)
        and p95 > ratio * stable_p95
    ):
        return (
            "Fail",
            f"p95 latency {p95:.0f} ms is {p95 / stable_p95:.2f}x the stable revision's "
            f"{stable_p95:.0f} ms (maxLatencyRatio {ratio})",
        )
    rate = errors / requests
    p95_text = f", p95 {p95:.0f} ms" if p95 is not None else ""
    return "Pass", f"{requests} requests, error rate {rate:.1%}{p95_text}"
