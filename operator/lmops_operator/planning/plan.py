"""The operator's planner: decide (``planning.decide``), then render the Decision as Kubernetes objects.

``plan`` reads the observed state off the objects the operator fetched (``Observed``: the RayService,
the ControllerRevisions, the standby), calls the one ``decide`` that local mode and ``lmops render`` call
too, and renders its Decision with the builders: the ControllerRevision, the RayService carrying the serve
config, the standby cluster, the Service, the PDB and the NetworkPolicy. Pure (the clock comes in through
``Observed.now``), so the operator, ``lmops render`` and the unit tests run exactly the same decisions.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from lmops_operator.api import LanguageModel, LanguageModelStatus
from lmops_operator.api.annotations import Controls
from lmops_operator.api.status import QualityGateResult
from lmops_operator.builders.controllerrevision import build_controller_revision
from lmops_operator.builders.networkpolicy import build_network_policy
from lmops_operator.builders.pdb import build_pdb
from lmops_operator.builders.rayservice import build_ray_service, live_image, runtime_image
from lmops_operator.builders.service import build_service
from lmops_operator.names import (
    REVISION_LABEL,
    controller_revision_name,
    endpoint,
)
from lmops_operator.planning import status as st
from lmops_operator.planning.decide import (
    Decision,
    ObservedState,
    PolicyViolation,
    StoredRevision,
    decide,
)
from lmops_operator.planning.metrics import MetricsSnapshot
from lmops_operator.planning.standby import plan_standby
from lmops_operator.planning.traffic import (
    Event,
)
from lmops_operator.settings import Settings
from lmops_runtime.config import SERVER_IMPORT_PATH
from lmops_runtime.contract import HTTP_PORT

REVISION_PREFIX = "rev-"


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
    return list(_revisions_in(raw)) if isinstance(raw, str) else []


@functools.lru_cache(maxsize=4096)
def _revisions_in(raw: str) -> tuple[str, ...]:
    """The parse of one serve config text, remembered: the live text is the one the operator last rendered,
    the same at every reconcile of a model at rest, and parsing it was the largest single cost of one."""
    try:
        document = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: 10x
    except yaml.YAMLError:
        return ()
    apps = document.get("applications") if isinstance(document, Mapping) else None
    out = []
    for app in apps if isinstance(apps, list) else []:
        if isinstance(app, Mapping) and app.get("import_path") == SERVER_IMPORT_PATH:
            name = str(app.get("name", ""))
            if name.startswith(REVISION_PREFIX):
                out.append(name.removeprefix(REVISION_PREFIX))
    return tuple(sorted(out))


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


def observed_state(observed: Observed) -> ObservedState:
    """The planner's view of what runs, read off the RayService the operator fetched."""
    return ObservedState(
        now=observed.now,
        serving=st.read_ray_service(observed.ray_service),
        deployed=deployed_revisions(observed.ray_service),
        metrics=observed.metrics,
        controls=observed.controls,
        quality=observed.quality,
    )


def plan(lm: LanguageModel, observed: Observed, settings: Settings) -> Plan:
    """Desired children, next status and events. Raises PolicyViolation or BrokenChildren."""
    check_policy(lm, settings)
    state = observed_state(observed)
    decision = decide(lm, stored_revisions(lm.metadata.name, observed.controller_revisions), state)
    return render(lm, decision, observed, state.serving, settings)


def render(
    lm: LanguageModel, decision: Decision, observed: Observed, view: st.RayServiceView, settings: Settings
) -> Plan:
    """The Decision as objects to apply (revisions first: the RayService refers to them), plus what only a
    cluster has: the image upgrade, the standby cluster and the in-cluster endpoint."""
    name = lm.metadata.name
    default_image = settings.default_image(lm.spec.model.engine, lm.spec.runtime.gpus)
    image = runtime_image(lm, default_image)
    ray_service = build_ray_service(lm, decision.serve_config, decision.revision_data.values(), default_image)
    standby_view = st.read_ray_service(observed.standby_ray_service)
    standby = plan_standby(lm, ray_service, view, observed.standby_ray_service, standby_view, observed.now)
    upgrade, upgrade_events = _cluster_upgrade(lm, observed, view, image)

    status = decision.status.model_copy(deep=True)
    status.ray_service_name = ray_service["metadata"]["name"]
    status.endpoint = endpoint(name, lm.metadata.namespace or "default", HTTP_PORT)
    status.cluster_upgrade = upgrade
    status.standby = standby.status
    objects = [
        build_controller_revision(lm, decision.target, decision.number, decision.target_data),
        ray_service,
        *standby.objects,
        build_service(lm, standby.selector),
        build_pdb(lm),
        build_network_policy(lm),
    ]
    traffic = decision.traffic
    return Plan(
        target_revision=decision.target,
        objects=objects,
        stale_revisions=[r.name for r in decision.stale],
        status=status,
        events=[*decision.events, *upgrade_events, *standby.events, *decision.phase_events],
        requeue_after=min(
            (t for t in (traffic.requeue_after, standby.requeue_after) if t is not None), default=None
        ),
        weights=dict(traffic.weights),
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
