"""One decision for a LanguageModel: the operator, local mode, ``lmops render`` and the benchmarks call it.

``decide`` takes the LanguageModel, its revision store and an observed-state view, and returns one
``Decision``: the target revision and its number, the traffic split, the serve config to deploy, the
status it leads to, the revision history to keep and the events. Pure: no I/O, the clock comes in with
the observed state. Turning a Decision into Kubernetes objects is a separate render step
(``planning.plan``, with the builders); local mode deploys ``Decision.serve_config`` on a local Ray.

``ObservedState`` is deliberately small so that any source can fill it: the operator reads it off the
RayService it fetched (``planning.plan``), local mode off Serve's application statuses, and a watch cache
could fill it without a single API call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lmops_operator.api.annotations import Controls
from lmops_operator.api.models import LanguageModel
from lmops_operator.api.status import LanguageModelStatus, QualityGateResult, RevisionSummary
from lmops_operator.names import controller_revision_name
from lmops_operator.planning import status as st
from lmops_operator.planning.metrics import MetricsSnapshot
from lmops_operator.planning.revision import revision_data, revision_hash
from lmops_operator.planning.serve_config import build_serve_config
from lmops_operator.planning.traffic import (
    Event,
    RevisionHealth,
    TrafficDecision,
    TrafficInput,
    decide_traffic,
)


class PolicyViolation(ValueError):
    """The spec passed the API server but the operator's policy forbids it: permanent until edited."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class BrokenChildren(RuntimeError):
    """Observed children are in a state the planner cannot build on (reported as Degraded, not raised on)."""


@dataclass(frozen=True)
class StoredRevision:
    """A stored revision (a ControllerRevision, or an entry of local mode's state file)."""

    revision: str
    name: str  # the ControllerRevision's name
    number: int
    data: Mapping[str, Any]
    created_at: datetime | None = None


@dataclass(frozen=True)
class ObservedState:
    """What runs now, as the planner needs it; every field has a value meaning "nothing seen"."""

    now: datetime
    serving: st.RayServiceView = field(default_factory=lambda: st.read_ray_service(None))
    deployed: Sequence[str] = ()  # revisions the deployed serve config runs
    metrics: MetricsSnapshot | None = None
    controls: Controls = field(default_factory=Controls)
    quality: QualityGateResult | None = None  # the quality gate's result when it ran in this reconcile


@dataclass(frozen=True)
class Decision:
    target: str  # the spec's revision
    number: int  # its revision number
    target_data: dict[str, Any]  # what its ControllerRevision stores
    traffic: TrafficDecision
    serve_config: dict[str, Any]  # serveConfigV2: the Router app plus one app per revision with traffic
    revision_data: dict[str, Mapping[str, Any]]  # stored data of every revision the serve config runs
    status: LanguageModelStatus  # phase, conditions, replicas and revision history set
    health: dict[str, RevisionHealth]  # of every revision the status names
    kept: list[StoredRevision]  # the history to keep, oldest first (the target included)
    stale: list[StoredRevision]  # to delete, newest first
    events: list[Event]  # the revision's and the traffic decision's
    phase_events: list[Event]  # a phase change a user acts on (emitted after any other event)


def number_revision(numbers: Mapping[str, int], target: str, source: str | None) -> tuple[int, list[Event]]:
    """The target revision's number, and the event that says why it is new or newly numbered.

    Revision numbers only grow; going back to an older spec renumbers that revision as the newest, as
    StatefulSets do with their ControllerRevisions.
    """
    highest = max(numbers.values(), default=0)
    existing = numbers.get(target)
    if existing is None:
        return highest + 1, [("Normal", "RevisionCreated", f"revision {target} (#{highest + 1}) of {source}")]
    if existing < highest:
        return highest + 1, [
            ("Normal", "RevisionRestored", f"revision {target} is current again as #{highest + 1}")
        ]
    return existing, []


def kept_revisions(
    numbers: Mapping[str, int], limit: int, target: str, decision: TrafficDecision
) -> set[str]:
    """The revisions history keeps: the newest ``limit`` by number, the target and every one in use."""
    protected = {target, *decision.weights, *(r for r in (decision.stable, decision.canary) if r)}
    ordered = sorted(numbers, key=lambda revision: numbers[revision], reverse=True)
    return {revision for i, revision in enumerate(ordered) if i < limit or revision in protected}


def phase_events(previous: LanguageModelStatus, assessment: st.Assessment) -> list[Event]:
    """An event when the phase changes to one a user acts on."""
    if previous.phase == assessment.phase:
        return []
    if assessment.phase in ("Ready", "ScaledToZero"):
        return [("Normal", assessment.phase, assessment.message)]
    if assessment.phase in ("Degraded", "Failed", "Paused"):
        return [("Warning", assessment.phase, assessment.message)]
    return []


def decide(lm: LanguageModel, store: Mapping[str, StoredRevision], observed: ObservedState) -> Decision:
    """Revision, traffic, serve config, status and history. Raises PolicyViolation or BrokenChildren.

    ``store`` is the revision store: the stored revisions by revision name.
    """
    spec = lm.spec
    previous = lm.status or LanguageModelStatus()
    target_data = revision_data(spec)
    target = revision_hash(target_data)
    stored = dict(store)
    number, events = number_revision(
        {r.revision: r.number for r in stored.values()}, target, spec.model.source
    )
    existing = stored.get(target)
    created = existing.created_at if existing else observed.now
    name = controller_revision_name(lm.metadata.name, target)
    stored[target] = StoredRevision(target, name, number, target_data, created)

    view = observed.serving
    deployed = set(observed.deployed) | {t.revision for t in previous.traffic or []}
    health = st.revision_health(view, sorted(deployed))
    traffic = decide_traffic(
        TrafficInput(
            spec=spec,
            status=previous,
            target_revision=target,
            health=health,
            metrics=observed.metrics,
            controls=observed.controls,
            now=observed.now,
            quality=observed.quality,
        )
    )
    events += traffic.events
    missing = sorted(r for r in traffic.weights if r not in stored)
    if missing:
        raise BrokenChildren(
            f"ControllerRevisions of deployed revisions {', '.join(missing)} are missing; "
            "restore them or edit spec.model to roll out a new revision"
        )
    data = {r: stored[r].data for r in traffic.weights}
    try:
        serve_config = build_serve_config(lm, traffic, data, target_revision=target)
    except ValueError as exc:  # a quantity the API pattern admits but no replica can be sized from
        raise PolicyViolation("InvalidResources", f"cannot size replicas: {exc}") from exc

    numbers = {r.revision: r.number for r in stored.values()}
    kept_names = kept_revisions(numbers, spec.rollout.revision_history_limit, target, traffic)
    by_number = sorted(stored.values(), key=lambda r: r.number)

    status = traffic.status.model_copy(deep=True)
    full_health = {**health, **st.revision_health(view, [r for r in traffic.weights if r not in health])}
    assessment = st.assess(spec, status, target, view, full_health)
    status.observed_generation = lm.metadata.generation
    status.phase = assessment.phase
    status.conditions = st.conditions(previous.conditions, assessment, lm.metadata.generation, observed.now)
    status.replicas = st.replicas(spec, traffic.weights, full_health, traffic.fallback)
    status.ready_replicas = view.ready_workers
    kept = [r for r in by_number if r.revision in kept_names]
    status.revisions = [
        RevisionSummary(
            name=r.revision, number=r.number, created_at=r.created_at, source=r.data["model"].get("source")
        )
        for r in kept
    ]
    return Decision(
        target=target,
        number=number,
        target_data=target_data,
        traffic=traffic,
        serve_config=serve_config,
        revision_data=data,
        status=status,
        health=full_health,
        kept=kept,
        stale=[r for r in reversed(by_number) if r.revision not in kept_names],
        events=events,
        phase_events=phase_events(previous, assessment),
    )
