"""The rollout state machine of one new revision beside a stable one. Pure: status in, status out.

States (``status.rollout.state``)::

    WaitingForReady --ready--> [QualityGate --Pass-->] Progressing(step 0..n-1) --last step passed--> promote
          |                         |Fail                   |failed checks >= failureLimit
          |failed                   v                       +-- autoRollback: abort
          +-----------------------> abort                   +-- otherwise: Paused (waits for promote/abort)

Strategy Immediate skips the steps: promote once ready (and past the quality gate). A step advances when
its pause has elapsed AND at least one analysis in the step passed, so a canary without traffic never
advances on time alone. Analyses run every intervalSeconds; in between, a window that already fails
(errors past the threshold, the Router's breaker open) counts at once instead of waiting for the
interval. ``promote`` (control) promotes as soon as the canary is ready; ``abort`` aborts.
Every timestamp lives in the status, so the machine resumes after an operator restart at any point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from lmops_operator.api.models import LanguageModelSpec
from lmops_operator.api.status import AnalysisResult, QualityGateResult, RolloutStatus
from lmops_operator.planning.analysis import analyse
from lmops_operator.planning.metrics import MetricsSnapshot

# How often to look again while waiting for replicas to become ready (seconds).
POLL_SECONDS = 5.0
Event = tuple[str, str, str]


@dataclass(frozen=True)
class CanaryView:
    """What the machine knows about the new revision and the world at this reconcile."""

    canary: str
    stable: str
    ready: bool
    failed: bool
    health_message: str
    metrics: MetricsSnapshot | None
    promote: bool
    abort: bool
    quality: QualityGateResult | None
    now: datetime


@dataclass
class CanaryOutcome:
    """``result``: continue (canary at ``weight``), promote (canary becomes stable), abort (to stable)."""

    result: Literal["continue", "promote", "abort"]
    rollout: RolloutStatus
    weight: int = 0
    analysis: AnalysisResult | None = None
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    reason: str = ""


def start(revision: str, now: datetime, promote: bool = False) -> RolloutStatus:
    """A fresh rollout of ``revision``: wait for its replicas before any traffic."""
    return RolloutStatus(
        revision=revision, state="WaitingForReady", started_at=now, promote_requested=promote
    )


def _seconds(later: datetime, earlier: datetime | None) -> float:
    return (later - earlier).total_seconds() if earlier is not None else float("inf")


def advance(spec: LanguageModelSpec, rollout: RolloutStatus, view: CanaryView) -> CanaryOutcome:
    """One reconcile of a rollout in state WaitingForReady, QualityGate, Progressing or Paused."""
    ro = rollout.model_copy(deep=True)
    if view.quality is not None and view.quality.revision == view.canary:
        ro.quality_gate = view.quality
    if view.abort:
        return _abort(ro, "aborted by request (lmops.io/abort)")
    if view.failed:
        return _abort(ro, f"revision {view.canary} failed: {view.health_message or 'not serving'}")
    if view.promote:
        ro.promote_requested = True
    if not view.ready:
        # Never route to a canary that is not ready; hold everything (timers included) until it is.
        message = f"waiting for revision {view.canary} to become ready"
        return CanaryOutcome("continue", ro, 0, requeue_after=POLL_SECONDS, reason=message)
    if ro.promote_requested:
        return CanaryOutcome("promote", ro, 100, reason="promoted by request (lmops.io/promote)")

    gate = spec.rollout.quality_gate
    if ro.state in ("WaitingForReady", "QualityGate") and gate is not None:
        result = ro.quality_gate if ro.quality_gate and ro.quality_gate.revision == view.canary else None
        if result is None or result.verdict == "Inconclusive":
            ro.state = "QualityGate"
            message = result.message if result else "quality gate pending"
            return CanaryOutcome("continue", ro, 0, requeue_after=POLL_SECONDS, reason=message)
        if result.verdict == "Fail":
            return _abort(ro, f"quality gate failed: {result.message}")

    if spec.rollout.strategy == "Immediate":
        return CanaryOutcome(
            "promote", ro, 100, reason=f"revision {view.canary} is ready (strategy Immediate)"
        )

    steps = spec.rollout.steps
    events: list[Event] = []
    if ro.state in ("WaitingForReady", "QualityGate"):
        ro.state = "Progressing"
        ro.step = 0
        ro.step_started_at = view.now
        ro.passed_checks = 0
        ro.last_check_at = view.now
        ro.baseline = view.metrics.baseline([view.canary, view.stable]) if view.metrics else None
        events.append(_step_event(0, len(steps), steps[0].weight, view.canary))
    ro.step = min(ro.step, len(steps) - 1)  # the steps may have been shortened mid-rollout
    weight = steps[ro.step].weight

    if ro.state == "Paused":
        return CanaryOutcome("continue", ro, weight, events=events, reason=ro.abort_reason or "paused")

    analysis_spec = spec.rollout.analysis
    analysis: AnalysisResult | None = None
    check_due = _seconds(view.now, ro.last_check_at) >= analysis_spec.interval_seconds
    if check_due or _fails_early(spec, ro, view):
        analysis = _check(spec, ro, view)
    if analysis is not None:
        if analysis.verdict == "Pass":
            ro.passed_checks += 1
        elif analysis.verdict == "Fail":
            ro.failed_checks += 1
            events.append(
                (
                    "Warning",
                    "AnalysisFailed",
                    f"{view.canary} ({ro.failed_checks}/{analysis_spec.failure_limit}): {analysis.message}",
                )
            )
            if ro.failed_checks >= analysis_spec.failure_limit:
                reason = f"analysis failed {ro.failed_checks} time(s): {analysis.message}"
                if spec.rollout.auto_rollback:
                    out = _abort(ro, reason)
                    out.analysis = analysis
                    out.events = events + out.events
                    return out
                ro.state = "Paused"
                ro.abort_reason = reason
                events.append(("Warning", "RolloutPaused", f"{view.canary} at {weight}%: {reason}"))
                return CanaryOutcome("continue", ro, weight, analysis, events, None, reason)

    step = steps[ro.step]
    if ro.passed_checks > 0 and _seconds(view.now, ro.step_started_at) >= step.pause_seconds:
        if ro.step + 1 >= len(steps):
            out = CanaryOutcome("promote", ro, 100, analysis, events, reason="all canary steps passed")
            return out
        ro.step += 1
        ro.step_started_at = view.now
        ro.passed_checks = 0
        weight = steps[ro.step].weight
        events.append(_step_event(ro.step, len(steps), weight, view.canary))

    next_check = analysis_spec.interval_seconds - _seconds(view.now, ro.last_check_at)
    step_left = steps[ro.step].pause_seconds - _seconds(view.now, ro.step_started_at)
    due = next_check if ro.passed_checks == 0 else min(next_check, step_left)
    reason = f"step {ro.step + 1}/{len(steps)} at {weight}%"
    return CanaryOutcome("continue", ro, weight, analysis, events, max(1.0, due), reason)


def _step_event(step: int, total: int, weight: int, canary: str) -> Event:
    return ("Normal", "CanaryStep", f"step {step + 1}/{total}: {weight}% of traffic to {canary}")


def _abort(ro: RolloutStatus, reason: str) -> CanaryOutcome:
    ro.state = "Aborted"
    ro.abort_reason = reason
    ro.promote_requested = False
    ro.baseline = None
    return CanaryOutcome("abort", ro, 0, events=[("Warning", "RolloutAborted", reason)], reason=reason)


def _fails_early(spec: LanguageModelSpec, ro: RolloutStatus, view: CanaryView) -> bool:
    """Between scheduled analyses, a window that already fails counts at once (it cannot get better by
    waiting: errors only add up), so a broken canary is rolled back well within one interval."""
    if view.metrics is None or ro.baseline is None:
        return False
    window = view.metrics.delta(MetricsSnapshot.from_baseline(ro.baseline))
    verdict = analyse(spec.rollout.analysis, view.canary, view.stable, window, None, view.now).verdict
    return verdict == "Fail"


def _check(spec: LanguageModelSpec, ro: RolloutStatus, view: CanaryView) -> AnalysisResult:
    """Analyse the window since the baseline, and move the baseline unless the window must keep growing."""
    ro.last_check_at = view.now
    if view.metrics is None:
        return AnalysisResult(
            revision=view.canary,
            verdict="Inconclusive",
            message="Router metrics unavailable",
            time=view.now,
        )
    current = view.metrics
    if ro.baseline is None:
        ro.baseline = current.baseline([view.canary, view.stable])
        return AnalysisResult(
            revision=view.canary,
            verdict="Inconclusive",
            message="analysis window started (no earlier counters)",
            time=view.now,
        )
    older = MetricsSnapshot.from_baseline(ro.baseline)
    window = current.delta(older)
    seconds = (current.time - older.time).total_seconds() if window is not current else None
    result = analyse(spec.rollout.analysis, view.canary, view.stable, window, seconds, view.now)
    if result.verdict != "Inconclusive":
        ro.baseline = current.baseline([view.canary, view.stable])
    return result
