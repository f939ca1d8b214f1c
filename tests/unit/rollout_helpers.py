"""Shared by the rollout, traffic and analysis tests: specs, Router snapshots, a reconcile driver."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lmops_operator.api.annotations import Controls
from lmops_operator.api.models import LanguageModelSpec
from lmops_operator.api.status import LanguageModelStatus
from lmops_operator.planning.metrics import MetricsSnapshot, RevisionMetrics
from lmops_operator.planning.traffic import (
    RevisionHealth,
    TrafficDecision,
    TrafficInput,
    decide_traffic,
)
from lmops_runtime.router.stats import LATENCY_BUCKETS_S

T0 = datetime(2026, 1, 1, tzinfo=UTC)
READY = RevisionHealth(ready=True, failed=False)
STARTING = RevisionHealth(ready=False, failed=False, message="starting")
FAILED = RevisionHealth(ready=False, failed=True, message="DEPLOY_FAILED: boom")


def spec(rollout: dict[str, Any] | None = None, **extra: Any) -> LanguageModelSpec:
    body: dict[str, Any] = {"model": {"source": "builtin://tiny"}, "runtime": {"gpus": 0}}
    if rollout is not None:
        body["rollout"] = rollout
    body.update(extra)
    return LanguageModelSpec.model_validate(body)


def canary_spec(**analysis: Any) -> LanguageModelSpec:
    """Two steps (20 %, 60 %) of 60 s, analysis every 10 s, 10 requests needed, 2 failures abort."""
    return spec(
        {
            "steps": [{"weight": 20, "pauseSeconds": 60}, {"weight": 60, "pauseSeconds": 60}],
            "analysis": {"minRequests": 10, "failureLimit": 2, "intervalSeconds": 10, **analysis},
        }
    )


def metrics(requests: int, errors: int = 0, latency_s: float = 0.05, healthy: bool = True) -> RevisionMetrics:
    """Cumulative counters of a revision whose every request took ``latency_s``."""
    slot = bisect.bisect_left(LATENCY_BUCKETS_S, latency_s)
    cumulative = tuple(requests if i >= slot else 0 for i in range(len(LATENCY_BUCKETS_S) + 1))
    return RevisionMetrics(requests, errors, cumulative, requests * latency_s, healthy=healthy)


def snapshot(at: datetime, epoch: str = "e1", **revisions: RevisionMetrics) -> MetricsSnapshot:
    return MetricsSnapshot(epoch, at, LATENCY_BUCKETS_S, dict(revisions))


@dataclass
class Counter:
    requests: int = 0
    errors: int = 0
    latency_s: float = 0.05


@dataclass
class Sim:
    """Drives decide_traffic like the operator does: status fed back, time and Router counters advanced.

    Each ``tick`` sends ``rate`` requests per simulated second split by the current weights; a revision in
    ``bad`` fails ``bad[rev]`` of its requests.
    """

    spec: LanguageModelSpec
    target: str
    status: LanguageModelStatus = field(default_factory=LanguageModelStatus)
    health: dict[str, RevisionHealth] = field(default_factory=dict)
    now: datetime = T0
    counters: dict[str, Counter] = field(default_factory=dict)
    bad: dict[str, float] = field(default_factory=dict)
    slow: dict[str, float] = field(default_factory=dict)
    metrics_up: bool = True
    last: TrafficDecision | None = None
    history: list[TrafficDecision] = field(default_factory=list)

    def snapshot(self) -> MetricsSnapshot | None:
        if not self.metrics_up:
            return None
        return snapshot(
            self.now, **{r: metrics(c.requests, c.errors, c.latency_s) for r, c in self.counters.items()}
        )

    def reconcile(self, controls: Controls | None = None) -> TrafficDecision:
        decision = decide_traffic(
            TrafficInput(
                spec=self.spec,
                status=self.status,
                target_revision=self.target,
                health=dict(self.health),
                metrics=self.snapshot(),
                controls=controls or Controls(),
                now=self.now,
            )
        )
        self.status = decision.status
        self.last = decision
        self.history.append(decision)
        return decision

    def serve(self, seconds: float, rate: float = 2.0) -> None:
        """Advance time, sending requests per the last decision's weights."""
        assert self.last is not None
        self.now += timedelta(seconds=seconds)
        total = int(seconds * rate)
        for rev, weight in self.last.weights.items():
            n = total * weight // 100
            c = self.counters.setdefault(rev, Counter())
            c.requests += n
            c.errors += int(n * self.bad.get(rev, 0.0))
            c.latency_s = self.slow.get(rev, c.latency_s)

    def run(self, seconds: float, every: float = 5.0, rate: float = 2.0) -> None:
        """Reconcile every ``every`` seconds for ``seconds``, serving in between."""
        elapsed = 0.0
        while elapsed < seconds:
            self.serve(every, rate)
            self.reconcile()
            elapsed += every
