"""Cluster-level failover: a standby RayService in another zone behind the same ``Service <name>``. Pure.

With ``spec.failover.standby.enabled`` the operator runs ``<name>-standby``, a copy of the primary RayService
(same serve config, so the same revisions and weights) whose pods are pinned to ``standby.zone``, while the
primary's pods avoid that zone. Standby pods carry ``lmops.io/standby-of: <name>`` instead of the model label,
so the Service picks one cluster by its selector alone: the primary's pods normally, the standby's once the
primary has had no ready serve endpoints for ``switchAfterSeconds``, and the primary's again as soon as it
has one. The countdown's start lives in ``status.standby``, so an operator restart loses nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lmops_operator.api import GROUP, LanguageModel
from lmops_operator.api.status import StandbyStatus
from lmops_operator.names import MODEL_LABEL, RAY_SERVE_LABEL, ray_service_name
from lmops_operator.planning.status import RayServiceView

STANDBY_LABEL = f"{GROUP}/standby-of"
ZONE_LABEL = "topology.kubernetes.io/zone"
STANDBY_SUFFIX = "-standby"

Event = tuple[str, str, str]


def standby_ray_service_name(model: str) -> str:
    return ray_service_name(f"{model}{STANDBY_SUFFIX}")


def _pod_templates(ray_service: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = ray_service["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
    return [group["template"] for group in groups]


def avoid_zone(ray_service: dict[str, Any], zone: str) -> None:
    """Keep the primary's pods out of the standby's zone (required node affinity), in place.

    One zone outage then cannot take both clusters down. Enabling standby changes the primary's pod
    template, so KubeRay moves the primary to a new cluster once (it keeps serving meanwhile).
    """
    term = {"matchExpressions": [{"key": ZONE_LABEL, "operator": "NotIn", "values": [zone]}]}
    for template in _pod_templates(ray_service):
        affinity = template["spec"].setdefault("affinity", {})
        node = affinity.setdefault("nodeAffinity", {})
        required = node.setdefault(
            "requiredDuringSchedulingIgnoredDuringExecution", {"nodeSelectorTerms": []}
        )
        required["nodeSelectorTerms"] = [
            {"matchExpressions": [*t.get("matchExpressions", []), *term["matchExpressions"]]}
            for t in required["nodeSelectorTerms"]
        ] or [term]


def build_standby(primary: Mapping[str, Any], model: str, zone: str) -> dict[str, Any]:
    """The standby RayService: the primary's (before ``avoid_zone``), renamed, relabelled, in ``zone``."""
    standby = copy.deepcopy(dict(primary))
    standby["metadata"]["name"] = standby_ray_service_name(model)
    for template in _pod_templates(standby):
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        labels.pop(MODEL_LABEL, None)
        labels[STANDBY_LABEL] = model
        spec = template["spec"]
        spec["nodeSelector"] = dict(sorted({**spec.get("nodeSelector", {}), ZONE_LABEL: zone}.items()))
    return standby


def service_selector(model: str, serving: str) -> dict[str, str]:
    """Pods of the serving cluster whose Serve proxy is ready (KubeRay's ``ray.io/serve=true``)."""
    key = STANDBY_LABEL if serving == "standby" else MODEL_LABEL
    return {key: model, RAY_SERVE_LABEL: "true"}


@dataclass(frozen=True)
class Switch:
    status: StandbyStatus
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None  # when the countdown ends, so the switch happens on time


def _seconds(a: datetime, b: datetime) -> float:
    return (a - b).total_seconds()


def decide_serving(
    previous: StandbyStatus | None,
    name: str,
    primary: RayServiceView,
    standby: RayServiceView,
    switch_after_s: int,
    now: datetime,
) -> Switch:
    """Which cluster the Service selects now.

    Primary with a ready serve endpoint: primary (switching back at once: it is the one the rollout drives).
    Primary without one: start (or keep) the countdown; once it reaches ``switch_after_s`` and the standby
    has an endpoint, switch to the standby. A standby that is itself down is never switched to.
    """
    was = previous.serving if previous is not None else "primary"
    since = previous.primary_unready_since if previous is not None else None
    switched_at = previous.switched_at if previous is not None else None
    standby_ready = standby.serve_endpoints > 0
    events: list[Event] = []
    requeue: float | None = None
    if primary.serve_endpoints > 0:
        serving, since = "primary", None
        message = "primary has ready serve endpoints"
        if was == "standby":
            switched_at = now
            events.append(
                ("Normal", "PrimaryRecovered", "primary cluster is serving again: Service back on it")
            )
    else:
        since = since or now
        unready_s = _seconds(now, since)
        if was == "standby":
            serving = "standby"
            message = f"primary has had no ready serve endpoint for {unready_s:.0f}s; serving from standby"
        elif unready_s >= switch_after_s and standby_ready:
            serving, switched_at = "standby", now
            message = f"primary had no ready serve endpoint for {unready_s:.0f}s; switched to standby"
            events.append(("Warning", "FailoverToStandby", f"{message} ({name})"))
        else:
            serving = "primary"
            if unready_s < switch_after_s:
                requeue = max(0.5, switch_after_s - unready_s)
                message = f"primary unready for {unready_s:.0f}s; standby takes over after {switch_after_s}s"
            else:
                message = "primary unready, but the standby has no ready serve endpoint either"
    status = StandbyStatus(
        ray_service_name=name,
        serving=serving,
        primary_unready_since=since,
        switched_at=switched_at,
        standby_ready=standby_ready,
        message=message,
    )
    return Switch(status, events, requeue)


@dataclass(frozen=True)
class StandbyPlan:
    objects: list[dict[str, Any]]  # the standby RayService, when enabled
    selector: dict[str, str]  # the Service's selector
    status: StandbyStatus | None
    events: list[Event]
    requeue_after: float | None
    delete: str | None  # name of a standby RayService to delete (standby turned off)


def plan_standby(
    lm: LanguageModel,
    primary: dict[str, Any],
    primary_view: RayServiceView,
    standby_observed: Mapping[str, Any] | None,
    standby_view: RayServiceView,
    now: datetime,
) -> StandbyPlan:
    """Standby objects, the Service selector and status; edits ``primary`` in place (zone avoidance)."""
    name = lm.metadata.name
    spec = lm.spec.failover.standby
    previous = lm.status.standby if lm.status is not None else None
    if spec is None or not spec.enabled or spec.zone is None:
        gone = standby_ray_service_name(name) if standby_observed is not None else None
        events: list[Event] = []
        if previous is not None and previous.serving == "standby":
            events.append(("Normal", "StandbyDisabled", "standby disabled: Service back on the primary"))
        return StandbyPlan([], service_selector(name, "primary"), None, events, None, gone)
    standby = build_standby(primary, name, spec.zone)
    avoid_zone(primary, spec.zone)
    switch = decide_serving(
        previous, standby["metadata"]["name"], primary_view, standby_view, spec.switch_after_seconds, now
    )
    return StandbyPlan(
        [standby],
        service_selector(name, switch.status.serving),
        switch.status,
        switch.events,
        switch.requeue_after,
        None,
    )
