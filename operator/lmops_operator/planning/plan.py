"""The planner: a LanguageModel plus what the operator observes -> desired objects, status and events.

Pure (no I/O, the clock comes in through ``Observed.now``) so the operator, ``lmops render`` and the unit
tests run exactly the same decisions. Traffic and rollout decisions are delegated to
``planning.traffic.decide_traffic``; this module turns its weights into objects and status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from lmops_operator.api import LanguageModel, LanguageModelStatus, RevisionSummary
from lmops_operator.api.models import QualityGateResult
from lmops_operator.builders.controllerrevision import build_controller_revision
from lmops_operator.builders.networkpolicy import build_network_policy
from lmops_operator.builders.pdb import build_pdb
from lmops_operator.builders.rayservice import build_ray_service, live_image, runtime_image
from lmops_operator.builders.service import build_service
from lmops_operator.planning import status as st
from lmops_operator.planning.metrics import MetricsSnapshot
from lmops_operator.planning.names import (
    REVISION_LABEL,
    controller_revision_name,
    endpoint,
)
from lmops_operator.planning.revision import revision_data, revision_hash
from lmops_operator.planning.serve_config import build_serve_config
from lmops_operator.planning.standby import plan_standby
from lmops_operator.planning.traffic import (
    Controls,
    Event,
    RevisionHealth,
    TrafficDecision,
    TrafficInput,
    decide_traffic,
)
from lmops_operator.settings import Settings
from lmops_runtime.config import HTTP_PORT, SERVER_IMPORT_PATH

REVISION_PREFIX = "rev-"


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
    """A ControllerRevision as the planner needs it."""

    revision: str
    name: str
    number: int
    data: Mapping[str, Any]
    created_at: datetime | None = None


@dataclass(frozen=True)
class Observed:
    """Everything the planner may look at besides the LanguageModel itself."""

    now: datetime
    ray_service: Mapping[str, Any] | None = None
    controller_revisions: Sequence[Mapping[str, Any]] = ()
    metrics: MetricsSnapshot | None = None
    controls: Controls = field(default_factory=Controls)
    quality: QualityGateResult | None = None  # the quality gate's result when it ran in this reconcile
    standby_ray_service: Mapping[str, Any] | None = None  # RayService <name>-standby, when it exists


@dataclass(frozen=True)
class Plan:
    target_revision: str
    objects: list[dict[str, Any]]  # to apply, in order (revisions first: the RayService refers to them)
    stale_revisions: list[str]  # ControllerRevision names to delete (history GC)
    status: LanguageModelStatus
    events: list[Event]
    requeue_after: float | None
    weights: dict[str, int]
    obsolete_ray_services: list[str] = field(default_factory=list)  # to delete (standby turned off)


def check_policy(lm: LanguageModel, settings: Settings) -> None:
    model = lm.spec.model
    if not settings.source_allowed(model.source):
        raise PolicyViolation(
            "SourceNotAllowed",
            f"spec.model.source {model.source!r} is not allowed by this operator "
            f"(allowed prefixes: {', '.join(settings.allowed_sources)})",
        )
    if model.trust_remote_code and not settings.allow_trust_remote_code:
        raise PolicyViolation(
            "TrustRemoteCodeForbidden",
            "spec.model.trustRemoteCode is forbidden by this operator (LMOPS_ALLOW_TRUST_REMOTE_CODE=false)",
        )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def stored_revisions(model: str, objects: Sequence[Mapping[str, Any]]) -> dict[str, StoredRevision]:
    """ControllerRevisions by revision name; ones without the label or data are not ours to use."""
    out: dict[str, StoredRevision] = {}
    for obj in objects:
        meta = obj.get("metadata") or {}
        revision = (meta.get("labels") or {}).get(REVISION_LABEL)
        data = obj.get("data")
        number = obj.get("revision")
        if not revision or not isinstance(data, Mapping) or not isinstance(number, int):
            continue
        if meta.get("name") != controller_revision_name(model, revision):
            continue
        out[revision] = StoredRevision(
            revision, str(meta["name"]), number, data, _parse_time(meta.get("creationTimestamp"))
        )
    return out


def deployed_revisions(ray_service: Mapping[str, Any] | None) -> list[str]:
    """Revisions in the live serve config: what KubeRay was last asked to run."""
    if ray_service is None:
        return []
    raw = (ray_service.get("spec") or {}).get("serveConfigV2")
    if not isinstance(raw, str):
        return []
    try:
        document = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: 10x
    except yaml.YAMLError:
        return []
    apps = document.get("applications") if isinstance(document, Mapping) else None
    out = []
    for app in apps if isinstance(apps, list) else []:
        if isinstance(app, Mapping) and app.get("import_path") == SERVER_IMPORT_PATH:
            name = str(app.get("name", ""))
            if name.startswith(REVISION_PREFIX):
                out.append(name.removeprefix(REVISION_PREFIX))
    return sorted(out)


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


@dataclass(frozen=True)
class Settled:
    """The status a traffic decision leads to, with the assessment behind its phase."""

    status: LanguageModelStatus
    assessment: st.Assessment
    health: dict[str, RevisionHealth]  # of every revision the status names


def settle_status(
    lm: LanguageModel,
    decision: TrafficDecision,
    target: str,
    view: st.RayServiceView,
    health: Mapping[str, RevisionHealth],
    now: datetime,
) -> Settled:
    """The decision's status with phase, conditions and replicas: the operator and local mode share it."""
    previous = lm.status or LanguageModelStatus()
    full_health = {**health, **st.revision_health(view, [r for r in decision.weights if r not in health])}
    status = decision.status.model_copy(deep=True)
    assessment = st.assess(lm.spec, status, target, view, full_health)
    status.observed_generation = lm.metadata.generation
    status.phase = assessment.phase
    status.conditions = st.conditions(previous.conditions, assessment, lm.metadata.generation, now)
    status.replicas = st.replicas(lm.spec, decision.weights, full_health, decision.fallback)
    status.ready_replicas = view.ready_workers
    return Settled(status, assessment, full_health)


def _cluster_upgrade(
    lm: LanguageModel, observed: Observed, view: st.RayServiceView, image: str
) -> tuple[str | None, list[Event]]:
    live = live_image(observed.ray_service)
    previous = lm.status.cluster_upgrade if lm.status else None
    if live is not None and live != image:
        return st.UPGRADE_MESSAGE_IMAGE, [
            ("Normal", "ClusterUpgrade", f"runtime image {live} -> {image}: KubeRay builds a new Ray cluster")
        ]
    if view.upgrading:
        return previous or st.UPGRADE_MESSAGE_CLUSTER, []
    if previous is not None:
        return None, [("Normal", "ClusterUpgradeDone", "KubeRay switched traffic to the new Ray cluster")]
    return None, []


def phase_events(previous: LanguageModelStatus, assessment: st.Assessment) -> list[Event]:
    """An event when the phase changes to one a user acts on."""
    if previous.phase == assessment.phase:
        return []
    if assessment.phase in ("Ready", "ScaledToZero"):
        return [("Normal", assessment.phase, assessment.message)]
    if assessment.phase in ("Degraded", "Failed", "Paused"):
        return [("Warning", assessment.phase, assessment.message)]
    return []


def plan(lm: LanguageModel, observed: Observed, settings: Settings) -> Plan:
    """Desired children, next status and events. Raises PolicyViolation or BrokenChildren."""
    check_policy(lm, settings)
    spec = lm.spec
    name = lm.metadata.name
    previous = lm.status or LanguageModelStatus()
    target_data = revision_data(spec)
    target = revision_hash(target_data)
    stored = stored_revisions(name, observed.controller_revisions)
    number, events = number_revision(
        {r.revision: r.number for r in stored.values()}, target, spec.model.source
    )
    existing = stored.get(target)
    stored[target] = StoredRevision(
        target,
        controller_revision_name(name, target),
        number,
        target_data,
        existing.created_at if existing else observed.now,
    )

    view = st.read_ray_service(observed.ray_service)
    deployed = set(deployed_revisions(observed.ray_service)) | {t.revision for t in previous.traffic or []}
    health = st.revision_health(view, sorted(deployed))
    decision = decide_traffic(
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
    events += decision.events
    missing = sorted(r for r in decision.weights if r not in stored)
    if missing:
        raise BrokenChildren(
            f"ControllerRevisions of deployed revisions {', '.join(missing)} are missing; "
            "restore them or edit spec.model to roll out a new revision"
        )
    data = {r: stored[r].data for r in decision.weights}
    try:
        serve_config = build_serve_config(lm, decision, data, target_revision=target)
    except ValueError as exc:  # a quantity the API pattern admits but no replica can be sized from
        raise PolicyViolation("InvalidResources", f"cannot size replicas: {exc}") from exc
    image = runtime_image(lm, settings.default_runtime_image)
    ray_service = build_ray_service(lm, serve_config, data.values(), settings.default_runtime_image)
    standby_view = st.read_ray_service(observed.standby_ray_service)
    standby = plan_standby(lm, ray_service, view, observed.standby_ray_service, standby_view, observed.now)

    numbers = {r.revision: r.number for r in stored.values()}
    kept_names = kept_revisions(numbers, spec.rollout.revision_history_limit, target, decision)
    by_number = sorted(stored.values(), key=lambda r: r.number)
    kept = [r for r in by_number if r.revision in kept_names]
    stale = [r for r in reversed(by_number) if r.revision not in kept_names]

    upgrade, upgrade_events = _cluster_upgrade(lm, observed, view, image)
    events += upgrade_events
    settled = settle_status(lm, decision, target, view, health, observed.now)
    status = settled.status
    status.revisions = [
        RevisionSummary(
            name=r.revision, number=r.number, created_at=r.created_at, source=r.data["model"].get("source")
        )
        for r in kept
    ]
    status.ray_service_name = ray_service["metadata"]["name"]
    status.endpoint = endpoint(name, lm.metadata.namespace or "default", HTTP_PORT)
    status.cluster_upgrade = upgrade
    status.standby = standby.status
    events += standby.events
    events += phase_events(previous, settled.assessment)

    objects = [
        build_controller_revision(lm, target, number, target_data),
        ray_service,
        *standby.objects,
        build_service(lm, standby.selector),
        build_pdb(lm),
        build_network_policy(lm),
    ]
    return Plan(
        target_revision=target,
        objects=objects,
        stale_revisions=[r.name for r in stale],
        status=status,
        events=events,
        requeue_after=min(
            (t for t in (decision.requeue_after, standby.requeue_after) if t is not None), default=None
        ),
        weights=dict(decision.weights),
        obsolete_ray_services=[standby.delete] if standby.delete else [],
    )


def failed_status(
    previous: LanguageModelStatus | None, generation: int | None, reason: str, message: str, now: datetime
) -> LanguageModelStatus:
    """Status for a spec the operator refuses: phase Failed, Ready=False with the reason; the rest kept."""
    status = (previous or LanguageModelStatus()).model_copy(deep=True)
    status.observed_generation = generation
    status.phase = "Failed"
    status.conditions = st.failed_conditions(status.conditions, reason, message, generation, now)
    return status


def degraded_status(
    previous: LanguageModelStatus | None, generation: int | None, reason: str, message: str, now: datetime
) -> LanguageModelStatus:
    """Status when the children are broken: traffic keeps whatever it had, Degraded says why."""
    status = (previous or LanguageModelStatus()).model_copy(deep=True)
    status.observed_generation = generation
    status.phase = "Degraded"
    status.conditions = st.conditions(
        status.conditions, st.Assessment("Degraded", reason, message, False), generation, now
    )
    return status


def utcnow() -> datetime:
    return datetime.now(UTC)
