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

from lmops_operator.k8s.cache import Caches
from lmops_operator.k8s.client import Kube
from lmops_operator.k8s.resources import RAY_CLUSTER, RAY_SERVICE
from lmops_operator.planning.worker_bounds import bounds_patch, cluster_names, desired_bounds

log = logging.getLogger(__name__)
JSON_PATCH = "application/json-patch+json"


def _sync(
    kube: Kube,
    caches: Caches,
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
            live = caches.ray_cluster(namespace, cluster)
            if live is None:
                continue
            ops = bounds_patch(bounds, live)
            if ops:
                caches.remember(kube.json_patch(RAY_CLUSTER.item(namespace, cluster), ops))
                log.info("worker bounds of RayCluster %s/%s set to %s", namespace, cluster, bounds)
                writes += 1
    for name in obsolete:
        if kube.delete(RAY_SERVICE.item(namespace, name)):
            log.info("deleted RayService %s/%s (standby disabled)", namespace, name)
            writes += 1
    return writes


async def sync_ray_clusters(
    kube: Kube,
    caches: Caches,
    namespace: str,
    desired: Sequence[Mapping[str, Any]],
    observed: Mapping[str, Mapping[str, Any] | None],
    obsolete: Sequence[str] = (),
) -> int:
    """Patch the worker bounds of every live cluster of the ``desired`` RayServices (``observed`` by name,
    as read before applying: their status names the clusters; the clusters from the caches);
    delete ``obsolete`` RayServices. Returns the writes."""
    return await asyncio.to_thread(_sync, kube, caches, namespace, desired, observed, obsolete)
