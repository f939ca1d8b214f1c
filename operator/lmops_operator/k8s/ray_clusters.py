"""After the children are applied: push worker bounds into live RayClusters, delete a retired standby.

Both are writes the planner asks for but server-side apply of the desired objects cannot express: the
RayCluster is KubeRay's object (only its worker bounds are patched, see ``planning.worker_bounds``), and a
standby RayService that is no longer wanted must be deleted explicitly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from lmops_operator.k8s.client import Kube
from lmops_operator.k8s.resources import RAY_SERVICE, Resource
from lmops_operator.planning.worker_bounds import bounds_patch, cluster_names, desired_bounds

log = logging.getLogger(__name__)
RAY_CLUSTER = Resource("ray.io/v1", "RayCluster", "rayclusters")
JSON_PATCH = "application/json-patch+json"


def _sync(
    kube: Kube,
    namespace: str,
    desired: Sequence[Mapping[str, Any]],
    observed: Mapping[str, Mapping[str, Any] | None],
    obsolete: Sequence[str],
) -> int:
    writes = 0
    for ray_service in desired:
        if ray_service.get("kind") != "RayService":
            continue
        bounds = desired_bounds(ray_service)
        for cluster in cluster_names(observed.get(ray_service["metadata"]["name"])):
            path = RAY_CLUSTER.item(namespace, cluster)
            live = kube.get(path)
            if live is None:
                continue
            ops = bounds_patch(bounds, live)
            if ops:
                kube.json_patch(path, ops)
                log.info("worker bounds of RayCluster %s/%s set to %s", namespace, cluster, bounds)
                writes += 1
    for name in obsolete:
        if kube.delete(RAY_SERVICE.item(namespace, name)):
            log.info("deleted RayService %s/%s (standby disabled)", namespace, name)
            writes += 1
    return writes


async def sync_ray_clusters(
    kube: Kube,
    namespace: str,
    desired: Sequence[Mapping[str, Any]],
    observed: Mapping[str, Mapping[str, Any] | None],
    obsolete: Sequence[str] = (),
) -> int:
    """Patch the worker bounds of every live cluster of the ``desired`` RayServices (``observed`` by name,
    as read before applying: their status names the clusters); delete ``obsolete`` RayServices. Writes."""
    return await asyncio.to_thread(_sync, kube, namespace, desired, observed, obsolete)
