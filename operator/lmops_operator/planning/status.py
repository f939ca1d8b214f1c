"""Reading KubeRay's RayService status, and mapping it to the LanguageModel's phase and conditions.

KubeRay's ``Ready`` condition only says one serve endpoint is up, so revision health comes from the Serve
application statuses (``rev-<revision>``), read from the pending cluster during an upgrade as well. Every
read tolerates missing or odd shapes: an unexpected status is reported as such, never raised.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lmops_operator.api import Condition, LanguageModelSpec, LanguageModelStatus, RevisionReplicas
from lmops_operator.api.base import ConditionStatus, ConditionType, Phase
from lmops_operator.planning.traffic import RevisionHealth
from lmops_runtime.config import ROUTER_APP, server_app_name

RUNNING = "RUNNING"
FAILED_APP_STATES = frozenset({"DEPLOY_FAILED", "UNHEALTHY"})
UPGRADE_MESSAGE_IMAGE = "runtime image changed: KubeRay is creating a new Ray cluster"
UPGRADE_MESSAGE_CLUSTER = "Ray cluster spec changed: KubeRay is creating a new Ray cluster"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class AppState:
    status: str
    message: str = ""


@dataclass(frozen=True)
class RayServiceView:
    """What the operator uses from a RayService's status, shape-checked."""

    exists: bool = False
    ready: bool | None = None  # condition Ready; None when KubeRay has not reported it
    ready_reason: str = ""
    ready_message: str = ""
    upgrading: bool = False
    apps: Mapping[str, AppState] = field(default_factory=dict)
    pending_apps: Mapping[str, AppState] = field(default_factory=dict)
    serve_endpoints: int = 0
    ready_workers: int | None = None
    cluster_name: str | None = None
    problems: tuple[str, ...] = ()


def _apps(service_status: Mapping[str, Any], problems: list[str], where: str) -> dict[str, AppState]:
    raw = service_status.get("applicationStatuses")
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append(f"{where}.applicationStatuses is not an object")
        return {}
    apps: dict[str, AppState] = {}
    for name, value in raw.items():
        if isinstance(value, Mapping) and isinstance(value.get("status"), str):
            message = value.get("message")
            apps[str(name)] = AppState(value["status"], message if isinstance(message, str) else "")
        else:
            problems.append(f"{where}.applicationStatuses[{name}] has no status")
    return apps


def read_ray_service(ray_service: Mapping[str, Any] | None) -> RayServiceView:
    if ray_service is None:
        return RayServiceView()
    problems: list[str] = []
    status = ray_service.get("status")
    if status is None:
        return RayServiceView(exists=True)
    if not isinstance(status, Mapping):
        return RayServiceView(exists=True, problems=("RayService status is not an object",))
    ready: bool | None = None
    ready_reason = ready_message = ""
    upgrading = False
    conditions = status.get("conditions")
    if conditions is not None and not isinstance(conditions, list):
        problems.append("RayService status.conditions is not a list")
        conditions = []
    for condition in conditions or []:
        condition = _mapping(condition)
        kind, value = condition.get("type"), condition.get("status")
        if kind == "Ready" and value in ("True", "False"):
            ready = value == "True"
            ready_reason = str(condition.get("reason") or "")
            ready_message = str(condition.get("message") or "")
        elif kind == "UpgradeInProgress" and value == "True":
            upgrading = True
    active = _mapping(status.get("activeServiceStatus"))
    pending = _mapping(status.get("pendingServiceStatus"))
    if pending.get("rayClusterName"):
        upgrading = True
    endpoints = status.get("numServeEndpoints", 0)
    if not isinstance(endpoints, int):
        problems.append("RayService status.numServeEndpoints is not an integer")
        endpoints = 0
    workers = _mapping(active.get("rayClusterStatus")).get("readyWorkerReplicas")
    name = active.get("rayClusterName")
    return RayServiceView(
        exists=True,
        ready=ready,
        ready_reason=ready_reason,
        ready_message=ready_message,
        upgrading=upgrading,
        apps=_apps(active, problems, "activeServiceStatus"),
        pending_apps=_apps(pending, problems, "pendingServiceStatus"),
        serve_endpoints=endpoints,
        ready_workers=workers if isinstance(workers, int) else None,
        cluster_name=name if isinstance(name, str) else None,
        problems=tuple(problems),
    )


def revision_health(view: RayServiceView, revisions: Iterable[str]) -> dict[str, RevisionHealth]:
    """Health of each deployed revision's Serve application.

    During a cluster upgrade the new cluster's app state wins once it reports one, so a revision that
    cannot start on the new image is seen as failing before KubeRay switches traffic.
    """
    health: dict[str, RevisionHealth] = {}
    for revision in revisions:
        app = server_app_name(revision)
        state = view.pending_apps.get(app) or view.apps.get(app)
        if state is None:
            health[revision] = RevisionHealth(False, False, f"application {app} not reported by KubeRay yet")
        elif state.status == RUNNING:
            health[revision] = RevisionHealth(True, False, state.message)
        elif state.status in FAILED_APP_STATES:
            health[revision] = RevisionHealth(False, True, f"{app} {state.status}: {state.message}".strip())
        else:
            health[revision] = RevisionHealth(False, False, f"{app} {state.status}: {state.message}".strip())
    return health


def router_state(view: RayServiceView) -> AppState | None:
    return view.pending_apps.get(ROUTER_APP) or view.apps.get(ROUTER_APP)


@dataclass(frozen=True)
class Assessment:
    """Phase and condition inputs computed from the traffic decision and the observed cluster."""

    phase: Phase
    reason: str
    message: str
    ready: bool


def assess(
    spec: LanguageModelSpec,
    status: LanguageModelStatus,
    target: str,
    view: RayServiceView,
    health: Mapping[str, RevisionHealth],
) -> Assessment:
    """The phase: what a person asks first (is it serving? is something moving? is something wrong?)."""
    stable, canary = status.stable_revision, status.canary_revision
    if view.problems:
        return Assessment("Degraded", "UnexpectedRayServiceStatus", "; ".join(view.problems), False)
    router = router_state(view)
    if router is not None and router.status in FAILED_APP_STATES:
        return Assessment(
            "Degraded" if stable else "Failed",
            "RouterFailed",
            f"application {ROUTER_APP} {router.status}: {router.message}".strip(),
            False,
        )
    stable_health = health.get(stable) if stable else None
    if stable is None or stable_health is None:
        target_health = health.get(target)
        if target_health is not None and target_health.failed:
            return Assessment(
                "Failed", "RevisionFailed", f"revision {target}: {target_health.message}", False
            )
        if not view.exists:
            return Assessment("Deploying", "Creating", "creating the RayService", False)
        message = target_health.message if target_health else "waiting for KubeRay"
        return Assessment("Deploying", "Deploying", f"revision {target} is starting: {message}", False)
    serving = stable_health.ready and view.ready is not False
    if stable_health.failed or not serving:
        why = stable_health.message or view.ready_message or "not ready"
        fallback = status.fallback_revision
        warm = health.get(fallback) if fallback else None
        if warm is not None and warm.ready and not warm.failed:
            # The Router steers the stable revision's calls to the warm fallback (and retries on it).
            message = f"stable revision {stable}: {why}; warm fallback {fallback} takes its traffic"
            return Assessment("Degraded", "FailedOverToFallback", message, True)
        return Assessment("Degraded", "StableUnhealthy", f"stable revision {stable}: {why}", False)
    failed = sorted(r for r, h in health.items() if h.failed)
    rollout = status.rollout
    if canary is not None:
        if rollout is not None and rollout.state == "Paused":
            return Assessment("Paused", "RolloutPaused", rollout.abort_reason or "waiting for a human", True)
        return Assessment(
            "Progressing",
            "CanaryInProgress",
            f"canary {canary} at {status.canary_weight or 0}% of traffic",
            True,
        )
    if failed:
        return Assessment("Degraded", "RevisionFailed", f"revisions {', '.join(failed)} failed", True)
    if stable != target:
        why = rollout.abort_reason if rollout is not None and rollout.abort_reason else "rolled back"
        return Assessment("Degraded", "RolledBack", f"serving {stable}, not {target}: {why}", True)
    # Zero ready workers means zero replicas only when replicas cannot run on the head: with GPUs the head
    # advertises no CPUs (builders.rayservice), so every replica needs a worker pod.
    if spec.autoscaling.min_replicas == 0 and spec.runtime.gpus > 0 and view.ready_workers == 0:
        return Assessment("ScaledToZero", "ScaledToZero", "no replicas; the first request starts one", True)
    return Assessment("Ready", "Serving", f"revision {stable} serves all traffic", True)


def _condition(
    previous: Mapping[ConditionType, Condition],
    kind: ConditionType,
    value: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> Condition:
    """A condition whose lastTransitionTime moves only when its status flips (as metav1 says)."""
    old = previous.get(kind)
    since = old.last_transition_time if old is not None and old.status == value else now
    return Condition(
        type=kind,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )


def conditions(
    previous: Iterable[Condition] | None,
    assessment: Assessment,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    old = {c.type: c for c in previous or []}
    phase = assessment.phase

    def flag(on: bool) -> ConditionStatus:
        return "True" if on else "False"

    ready_reason = assessment.reason if not assessment.ready or phase == "Ready" else "Serving"
    return [
        _condition(old, "Ready", flag(assessment.ready), ready_reason, assessment.message, generation, now),
        _condition(
            old,
            "Progressing",
            flag(phase in ("Deploying", "Progressing")),
            assessment.reason if phase in ("Deploying", "Progressing") else "Idle",
            assessment.message if phase in ("Deploying", "Progressing") else "",
            generation,
            now,
        ),
        _condition(
            old,
            "Degraded",
            flag(phase in ("Degraded", "Failed")),
            assessment.reason if phase in ("Degraded", "Failed") else "Healthy",
            assessment.message if phase in ("Degraded", "Failed") else "",
            generation,
            now,
        ),
        _condition(
            old,
            "RolloutPaused",
            flag(phase == "Paused"),
            assessment.reason if phase == "Paused" else "NotPaused",
            assessment.message if phase == "Paused" else "",
            generation,
            now,
        ),
    ]


def failed_conditions(
    previous: Iterable[Condition] | None, reason: str, message: str, generation: int | None, now: datetime
) -> list[Condition]:
    return conditions(previous, Assessment("Failed", reason, message, False), generation, now)


def replicas(
    spec: LanguageModelSpec,
    weights: Mapping[str, int],
    health: Mapping[str, RevisionHealth],
    fallback: str | None,
) -> list[RevisionReplicas]:
    """Per revision: desired is the autoscaling floor Serve keeps; ready counts it once the app runs.

    Serve does not publish per-deployment replica counts through KubeRay, so this is the floor, not the
    autoscaled count; status.readyReplicas carries the live total (ready worker pods).
    """
    out = []
    for revision in sorted(weights):
        floor = spec.autoscaling.min_replicas
        if revision == fallback and weights[revision] == 0:
            floor = max(1, floor)
        ok = health.get(revision)
        out.append(RevisionReplicas(revision=revision, desired=floor, ready=floor if ok and ok.ready else 0))
    return out
