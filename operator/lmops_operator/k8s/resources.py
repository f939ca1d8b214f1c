"""REST paths of the kinds the operator touches (no discovery round-trips: the set is fixed)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lmops_operator.api import API_VERSION, KIND, PLURAL


@dataclass(frozen=True)
class Resource:
    api_version: str
    kind: str
    plural: str

    @property
    def base(self) -> str:
        return f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"

    def collection(self, namespace: str) -> str:
        return f"{self.base}/namespaces/{namespace}/{self.plural}"

    def item(self, namespace: str, name: str) -> str:
        return f"{self.collection(namespace)}/{name}"


LANGUAGE_MODEL = Resource(API_VERSION, KIND, PLURAL)
RAY_SERVICE = Resource("ray.io/v1", "RayService", "rayservices")
CONTROLLER_REVISION = Resource("apps/v1", "ControllerRevision", "controllerrevisions")
SERVICE = Resource("v1", "Service", "services")
PDB = Resource("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets")
EVENT = Resource("v1", "Event", "events")
CONFIG_MAP = Resource("v1", "ConfigMap", "configmaps")
SECRET = Resource("v1", "Secret", "secrets")
NETWORK_POLICY = Resource("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies")
RAY_CLUSTER = Resource("ray.io/v1", "RayCluster", "rayclusters")
KOPF_PEERING = Resource("kopf.dev/v1", "KopfPeering", "kopfpeerings")
CLUSTER_KOPF_PEERING = Resource("kopf.dev/v1", "ClusterKopfPeering", "clusterkopfpeerings")

_BY_KIND = {
    (r.api_version, r.kind): r
    for r in (LANGUAGE_MODEL, RAY_SERVICE, CONTROLLER_REVISION, SERVICE, PDB, EVENT, NETWORK_POLICY)
}


def resource_of(obj: Mapping[str, Any]) -> Resource:
    key = (str(obj.get("apiVersion")), str(obj.get("kind")))
    if key not in _BY_KIND:
        raise KeyError(f"the operator does not manage {key[1]} {key[0]}")
    return _BY_KIND[key]
