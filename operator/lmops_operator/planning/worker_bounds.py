"""Worker bounds KubeRay does not propagate: the JSON patch that carries them to a live RayCluster. Pure.

KubeRay hashes a RayService's cluster spec without worker ``replicas/minReplicas/maxReplicas``
(kuberay#4568), so editing ``spec.autoscaling`` changes the RayService but never reaches the running
RayCluster, whose worker group bounds are what the Ray autoscaler obeys. The operator therefore patches the
RayCluster's ``workerGroupSpecs[].minReplicas/maxReplicas`` itself (and lifts ``replicas`` into the new
range, as the autoscaler would).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def desired_bounds(ray_service: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """groupName -> (minReplicas, maxReplicas) of a desired RayService's worker groups."""
    cluster = (ray_service.get("spec") or {}).get("rayClusterConfig") or {}
    out: dict[str, tuple[int, int]] = {}
    for group in cluster.get("workerGroupSpecs") or []:
        out[str(group["groupName"])] = (int(group["minReplicas"]), int(group["maxReplicas"]))
    return out


def cluster_names(ray_service: Mapping[str, Any] | None) -> list[str]:
    """RayClusters a RayService runs now: the active one and, during an upgrade, the pending one."""
    status = (ray_service or {}).get("status")
    names: list[str] = []
    if not isinstance(status, Mapping):
        return names
    for key in ("activeServiceStatus", "pendingServiceStatus"):
        part = status.get(key)
        name = part.get("rayClusterName") if isinstance(part, Mapping) else None
        if isinstance(name, str) and name and name not in names:
            names.append(name)
    return names


def bounds_patch(
    bounds: Mapping[str, tuple[int, int]], live_cluster: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """JSON patch (RFC 6902) setting each known group's bounds; empty when they already match.

    Every group's operations start with a ``test`` of its groupName at that index, so a concurrent
    reordering of the list makes the patch fail instead of editing the wrong group.
    """
    groups = (live_cluster.get("spec") or {}).get("workerGroupSpecs") or []
    ops: list[dict[str, Any]] = []
    for index, group in enumerate(groups):
        if not isinstance(group, Mapping):
            continue
        name = group.get("groupName")
        if name not in bounds:
            continue
        low, high = bounds[str(name)]
        base = f"/spec/workerGroupSpecs/{index}"
        changes: list[dict[str, Any]] = []
        for field, value in (("minReplicas", low), ("maxReplicas", high)):
            if group.get(field) != value:
                op = "replace" if field in group else "add"
                changes.append({"op": op, "path": f"{base}/{field}", "value": value})
        replicas = group.get("replicas")
        if isinstance(replicas, int) and not low <= replicas <= high:
            changes.append(
                {"op": "replace", "path": f"{base}/replicas", "value": min(max(replicas, low), high)}
            )
        if changes:
            ops += [{"op": "test", "path": f"{base}/groupName", "value": name}, *changes]
    return ops
