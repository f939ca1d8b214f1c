"""The Router's HTTP contract with its readers: the port, the revision header, GET /stats as a typed model.

The runtime writes ``StatsResponse`` (``router.telemetry``) and the operator reads it (one client,
``lmops_operator.router_client``), so both sides change together or a type check fails. Like ``config``,
this module imports neither Ray nor Kubernetes: the operator's image installs it without the runtime extra.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

HTTP_PORT = 8000  # the Serve HTTP proxy: the Router's OpenAI API, /stats and /metrics
STATS_PATH = "/stats"
METRICS_PATH = "/metrics"
# Response header naming the revision that served a call; as a request header, it pins a call to one.
REVISION_HEADER = "x-lmops-revision"
INF = "+Inf"


class _Wire(BaseModel):
    # Readers ignore fields they do not know, so the Router may add fields before every reader knows them.
    model_config = ConfigDict(extra="ignore")


class LatencyBucket(_Wire):
    le: float | Literal["+Inf"]
    count: int  # cumulative, as in Prometheus


class LatencySummary(_Wire):
    buckets: list[LatencyBucket]  # ends with exactly one +Inf bucket
    sum: float
    count: int
    p50: float | None = None
    p95: float | None = None

    def bounds_and_counts(self) -> tuple[tuple[float, ...], tuple[int, ...]]:
        """(finite bounds, cumulative counts including +Inf); ValueError when the +Inf bucket is missing."""
        bounds = tuple(float(b.le) for b in self.buckets if b.le != INF)
        counts = tuple(b.count for b in self.buckets)
        if self.buckets and (len(counts) != len(bounds) + 1 or self.buckets[-1].le != INF):
            raise ValueError("latency buckets must end with exactly one +Inf bucket")
        return bounds, counts


class TokenCounts(_Wire):
    prompt: int = 0
    completion: int = 0


class RevisionStats(_Wire):
    """One revision's counters since the stats actor's ``epoch`` began, and its health as Routers see it."""

    requests: int
    errors: int
    codes: dict[str, int]
    latency_seconds: LatencySummary
    tokens: TokenCounts
    healthy: bool = True
    consecutive_failures: int = 0
    # The engine's own measures on vLLM revisions, by vLLM's metric names (``engine_metrics``): gauges, and
    # latency summaries as ``<name>_sum``/``<name>_count``; absent on the transformers engine.
    engine: dict[str, float] | None = None


class StatsResponse(_Wire):
    """GET /stats: cumulative counters per revision plus the Router's routing state."""

    model: str
    epoch: str  # changes when the counters restart from zero
    started_at: float
    now: float  # the Router's clock, seconds since the epoch
    router_replicas: int
    weights: dict[str, int]
    stable: str
    fallback: str | None = None
    revisions: dict[str, RevisionStats]


def cumulative(counts: Iterable[int]) -> tuple[int, ...]:
    out: list[int] = []
    total = 0
    for count in counts:
        total += count
        out.append(total)
    return tuple(out)


def latency_summary(bounds: Sequence[float], counts: Sequence[int], latency_sum: float) -> LatencySummary:
    """The summary of per-bucket (non-cumulative) ``counts``; the last count is the +Inf overflow."""
    running = cumulative(counts)
    buckets = [
        LatencyBucket(le=INF if math.isinf(bound) else bound, count=n)
        for bound, n in zip([*bounds, math.inf], running, strict=True)
    ]
    return LatencySummary(
        buckets=buckets,
        sum=latency_sum,
        count=running[-1] if running else 0,
        p50=quantile(bounds, running, 0.5),
        p95=quantile(bounds, running, 0.95),
    )


def quantile(bounds: Sequence[float], cumulative: Sequence[int], q: float) -> float | None:
    """A quantile from cumulative bucket counts, interpolated within the bucket as Prometheus does.

    ``cumulative`` has one count per bound plus the +Inf overflow; a quantile in the overflow is the
    highest bound. None when there are no observations.
    """
    if not cumulative or cumulative[-1] <= 0:
        return None
    rank = q * cumulative[-1]
    previous = 0
    for i, count in enumerate(cumulative):
        if count >= rank and count > previous:
            if i >= len(bounds):
                return bounds[-1] if bounds else None
            lower = bounds[i - 1] if i > 0 else 0.0
            return lower + (bounds[i] - lower) * (rank - previous) / (count - previous)
        previous = count
    return bounds[-1] if bounds else None
