"""Per-revision Router counters as the operator sees them: read from GET /stats, differenced into windows.

The Router serves cumulative totals since its stats actor started (``epoch``); canary analysis needs what
happened in one window, so it subtracts an older snapshot. A new epoch (the actor restarted) or a counter
that went down means a reset: the newer totals are then the whole window. The older snapshot is kept in the
LanguageModel status (``MetricsBaseline``), so an operator restart loses no window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lmops_operator.api.status import MetricsBaseline, RevisionCounts
from lmops_runtime.contract import StatsResponse, quantile


@dataclass(frozen=True)
class RevisionMetrics:
    """Counters of one revision; ``buckets`` are cumulative counts per bound of ``bounds`` plus +Inf."""

    requests: int = 0
    errors: int = 0
    buckets: tuple[int, ...] = ()
    latency_sum: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    healthy: bool = True
    #: vLLM revisions only: the engine's time to first token, summed over requests, and their count.
    ttft_sum: float = 0.0
    ttft_count: int = 0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def mean_ttft_seconds(self) -> float | None:
        return self.ttft_sum / self.ttft_count if self.ttft_count else None


@dataclass(frozen=True)
class MetricsSnapshot:
    """Cumulative per-revision counters read at ``time``; ``bounds``: latency bucket bounds in seconds."""

    epoch: str
    time: datetime
    bounds: tuple[float, ...]
    revisions: Mapping[str, RevisionMetrics] = field(default_factory=dict)

    def get(self, revision: str) -> RevisionMetrics:
        return self.revisions.get(revision) or RevisionMetrics(buckets=(0,) * (len(self.bounds) + 1))

    def p95_seconds(self, revision: str) -> float | None:
        return quantile(self.bounds, self.get(revision).buckets, 0.95)

    def delta(self, older: MetricsSnapshot | None) -> MetricsSnapshot:
        """Counters accumulated since ``older``; the whole totals when there was a reset (or no older)."""
        if older is None or older.epoch != self.epoch or older.bounds != self.bounds:
            return self
        out: dict[str, RevisionMetrics] = {}
        for name, now in self.revisions.items():
            before = older.revisions.get(name)
            if before is None:
                out[name] = now
                continue
            buckets = tuple(a - b for a, b in zip(now.buckets, before.buckets, strict=False))
            if now.requests < before.requests or any(n < 0 for n in buckets):
                out[name] = now  # this revision's counters went down: treat as reset
                continue
            out[name] = RevisionMetrics(
                requests=now.requests - before.requests,
                errors=max(0, now.errors - before.errors),
                buckets=buckets,
                latency_sum=max(0.0, now.latency_sum - before.latency_sum),
                prompt_tokens=max(0, now.prompt_tokens - before.prompt_tokens),
                completion_tokens=max(0, now.completion_tokens - before.completion_tokens),
                healthy=now.healthy,
                ttft_sum=max(0.0, now.ttft_sum - before.ttft_sum),
                ttft_count=max(0, now.ttft_count - before.ttft_count),
            )
        return MetricsSnapshot(self.epoch, self.time, self.bounds, out)

    def baseline(self, revisions: list[str]) -> MetricsBaseline:
        """The status form of this snapshot, restricted to ``revisions`` to keep the status small."""
        return MetricsBaseline(
            epoch=self.epoch,
            time=self.time,
            latency_bounds_seconds=list(self.bounds),
            revisions=[
                RevisionCounts(
                    revision=name,
                    requests=self.get(name).requests,
                    errors=self.get(name).errors,
                    latency_buckets=list(self.get(name).buckets),
                    ttft_seconds_sum=self.get(name).ttft_sum,
                    ttft_count=self.get(name).ttft_count,
                )
                for name in sorted(set(revisions))
            ],
        )

    @classmethod
    def from_baseline(cls, baseline: MetricsBaseline) -> MetricsSnapshot:
        """Inverse of ``baseline`` (latency sums and tokens are not kept: analysis does not use them)."""
        return cls(
            epoch=baseline.epoch,
            time=baseline.time,
            bounds=tuple(baseline.latency_bounds_seconds),
            revisions={
                c.revision: RevisionMetrics(
                    requests=c.requests,
                    errors=c.errors,
                    buckets=tuple(c.latency_buckets),
                    ttft_sum=c.ttft_seconds_sum,
                    ttft_count=c.ttft_count,
                )
                for c in baseline.revisions
            },
        )

    @classmethod
    def from_stats(cls, body: StatsResponse, now: datetime | None = None) -> MetricsSnapshot:
        """The Router's GET /stats; ValueError when revisions disagree on the latency buckets."""
        bounds: tuple[float, ...] | None = None
        revisions: dict[str, RevisionMetrics] = {}
        for name, rev in body.revisions.items():
            rev_bounds, counts = rev.latency_seconds.bounds_and_counts()
            if bounds is None:
                bounds = rev_bounds
            elif rev_bounds != bounds:
                raise ValueError(f"revision {name}: latency buckets differ from the other revisions")
            engine = rev.engine or {}
            revisions[name] = RevisionMetrics(
                requests=rev.requests,
                errors=rev.errors,
                buckets=counts,
                latency_sum=rev.latency_seconds.sum,
                prompt_tokens=rev.tokens.prompt,
                completion_tokens=rev.tokens.completion,
                healthy=rev.healthy,
                ttft_sum=float(engine.get("time_to_first_token_seconds_sum", 0.0)),
                ttft_count=int(engine.get("time_to_first_token_seconds_count", 0)),
            )
        at = now or datetime.fromtimestamp(body.now, UTC)
        return cls(epoch=body.epoch, time=at, bounds=bounds or (), revisions=revisions)
