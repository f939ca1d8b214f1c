"""Traffic decisions: which revisions run and what share of requests each gets. Pure.

The one entry point the planner calls (see /work/traffic-contract.md). Cases, by the spec's target revision
T, the status' stable S and canary C:

- no S yet (first deploy): T alone at 100 %; it becomes stable once ready.
- T == S: steady state; a canary of another revision, if any, is dropped (the spec went back to stable).
- T != S: a rollout of T (``planning.rollout``); a canary C != T is superseded: dropped, T starts over.
  An aborted rollout of T stays aborted (traffic on S) until the spec changes again, or a promote/restart.

Invariants (property-tested): weights sum to 100, and a canary gets traffic only while ready.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from lmops_operator.api.annotations import Controls
from lmops_operator.api.models import LanguageModelSpec
from lmops_operator.api.status import LanguageModelStatus, QualityGateResult, RolloutStatus, TrafficTarget
from lmops_operator.planning import rollout as machine
from lmops_operator.planning.metrics import MetricsSnapshot

Event = tuple[str, str, str]


@dataclass(frozen=True)
class RevisionHealth:
    ready: bool  # its Serve application is RUNNING with >= 1 ready replica (or scaled to zero on purpose)
    failed: bool  # DEPLOY_FAILED / UNHEALTHY, or missing after it was deployed
    message: str = ""


@dataclass(frozen=True)
class TrafficInput:
    spec: LanguageModelSpec
    status: LanguageModelStatus
    target_revision: str
    health: Mapping[str, RevisionHealth]
    metrics: MetricsSnapshot | None
    controls: Controls
    now: datetime
    # Result of the quality gate when the caller ran it in this reconcile (it does so while the previous
    # status has rollout.state == "QualityGate"; see quality_gate.needs_gate).
    quality: QualityGateResult | None = None


@dataclass(frozen=True)
class TrafficDecision:
    weights: dict[str, int]
    stable: str | None
    canary: str | None
    fallback: str | None
    status: LanguageModelStatus
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


_UNKNOWN = RevisionHealth(ready=False, failed=False, message="not deployed yet")


def _health(inp: TrafficInput, revision: str) -> RevisionHealth:
    return inp.health.get(revision, _UNKNOWN)


def _decision(
    inp: TrafficInput,
    stable: str,
    canary: str | None,
    canary_weight: int,
    fallback: str | None,
    rollout: RolloutStatus | None,
    events: list[Event],
    requeue_after: float | None,
    *,
    promoted: bool = True,
) -> TrafficDecision:
    """Assemble weights and status. ``promoted``: ``stable`` has been ready (it is status.stableRevision)."""
    if canary is not None and not (_health(inp, canary).ready and not _health(inp, canary).failed):
        canary_weight = 0
    weights = {stable: 100 - (canary_weight if canary else 0)}
    if canary is not None:
        weights[canary] = canary_weight
    keep_warm = inp.spec.failover.keep_previous_warm
    if not keep_warm or fallback in weights:
        fallback = None
    if fallback is not None:
        weights[fallback] = 0
    status = inp.status.model_copy(deep=True)
    status.stable_revision = stable if promoted else None
    status.canary_revision = canary
    status.canary_weight = weights[canary] if canary else None
    status.fallback_revision = fallback
    status.traffic = [TrafficTarget(revision=r, weight=w) for r, w in sorted(weights.items())]
    status.rollout = rollout
    return TrafficDecision(weights, stable, canary, fallback, status, events, requeue_after)


def decide_traffic(inp: TrafficInput) -> TrafficDecision:
    """The traffic split and rollout status for this reconcile."""
    st = inp.status
    target = inp.target_revision
    stable = st.stable_revision
    canary = st.canary_revision
    fallback = st.fallback_revision
    events: list[Event] = []

    if stable is None:
        return _first_deploy(inp)

    if target == stable:
        if canary is not None:
            events.append(
                ("Normal", "RolloutSuperseded", f"spec is back at stable {stable}; canary {canary} dropped")
            )
        return _decision(inp, stable, None, 0, fallback, None, events, None)

    ro = st.rollout
    if canary is not None and canary != target:
        events.append(("Normal", "RolloutSuperseded", f"canary {canary} replaced by new revision {target}"))
        ro = None
        canary = None
    if ro is None or ro.revision != target:
        ro = machine.start(target, inp.now)
        if canary is None:
            events.append(("Normal", "RolloutStarted", f"rolling out {target} beside stable {stable}"))
    if ro.state == "Aborted":
        if not (inp.controls.restart or inp.controls.promote):
            return _decision(inp, stable, None, 0, fallback, ro, events, None)
        how = "promote" if inp.controls.promote else "restart"
        events.append(("Normal", "RolloutRestarted", f"rollout of {target} resumed by {how}"))
        ro = machine.start(target, inp.now, promote=inp.controls.promote)
    elif inp.controls.restart:
        events.append(("Normal", "RolloutRestarted", f"rollout of {target} restarted from the first step"))
        ro = machine.start(target, inp.now, promote=ro.promote_requested)

    health = _health(inp, target)
    view = machine.CanaryView(
        canary=target,
        stable=stable,
        ready=health.ready,
        failed=health.failed,
        health_message=health.message,
        metrics=inp.metrics,
        promote=inp.controls.promote,
        abort=inp.controls.abort,
        quality=inp.quality,
        now=inp.now,
    )
    out = machine.advance(inp.spec, ro, view)
    events += out.events
    status_base = inp.status
    if out.analysis is not None:
        status_base = status_base.model_copy(update={"last_analysis": out.analysis})
        inp = _with_status(inp, status_base)
    if out.result == "abort":
        return _decision(inp, stable, None, 0, fallback, out.rollout, events, None)
    if out.result == "promote":
        events.append(("Normal", "RolloutPromoted", f"{target} is stable at 100%: {out.reason}"))
        return _decision(inp, target, None, 0, stable, None, events, None)
    return _decision(inp, stable, target, out.weight, fallback, out.rollout, events, out.requeue_after)


def _with_status(inp: TrafficInput, status: LanguageModelStatus) -> TrafficInput:
    return TrafficInput(
        inp.spec, status, inp.target_revision, inp.health, inp.metrics, inp.controls, inp.now, inp.quality
    )


def _first_deploy(inp: TrafficInput) -> TrafficDecision:
    """No stable revision yet: the target takes all traffic and becomes stable once ready."""
    target = inp.target_revision
    health = _health(inp, target)
    if health.ready and not health.failed:
        # No event of its own: the phase change it causes posts one ("Ready: revision ... serves all
        # traffic"), and one transition is one event (at a thousand models each is an API write).
        return _decision(inp, target, None, 0, None, None, [], None)
    ro = inp.status.rollout
    if ro is None or ro.revision != target:
        ro = machine.start(target, inp.now)
    events = []
    if health.failed:
        events.append(("Warning", "RevisionFailed", f"{target}: {health.message or 'failed to start'}"))
    # No poll: readiness is the RayService's status, which reaches the operator as a watch event (local mode
    # looks again on its own schedule); a poll per deploying model was most of the work at 1,000 models.
    return _decision(inp, target, None, 0, None, ro, events, None, promoted=False)
