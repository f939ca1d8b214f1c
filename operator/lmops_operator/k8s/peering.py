"""kopf's peering CRDs (kopf.dev/v1 KopfPeering, ClusterKopfPeering): two operator replicas use them to
agree that only one acts. kopf does not ship them in its wheel, so lmops provides them (chart and tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lmops_operator.k8s.client import Kube, KubeError


def _crd(kind: str, plural: str, scope: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "scope": scope,
            "group": "kopf.dev",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                            },
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def peering_crds() -> list[dict[str, Any]]:
    return [
        _crd("ClusterKopfPeering", "clusterkopfpeerings", "Cluster"),
        _crd("KopfPeering", "kopfpeerings", "Namespaced"),
    ]


def peering_object(name: str, namespace: str | None) -> dict[str, Any]:
    """The peering object kopf keeps its heartbeats in; kopf silently skips peering when it is missing."""
    if namespace is None:
        return {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}}
    return {
        "apiVersion": "kopf.dev/v1",
        "kind": "KopfPeering",
        "metadata": {"name": name, "namespace": namespace},
    }


def peering_path(name: str, namespace: str | None) -> str:
    if namespace is None:
        return f"/apis/kopf.dev/v1/clusterkopfpeerings/{name}"
    return f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings/{name}"


def ensure_peering(kube: Kube, name: str, namespaces: Sequence[str]) -> list[str]:
    """Create the missing peering objects (cluster-wide when ``namespaces`` is empty); returns problems.

    An operator without create rights (or without kopf's CRDs) still starts; the problem is logged,
    and kopf's mandatory peering then refuses to run unpeered.
    """
    problems = []
    targets: list[str | None] = [*namespaces] or [None]
    for namespace in targets:
        path = peering_path(name, namespace)
        try:
            if kube.get(path) is None:
                collection = path.rsplit("/", 1)[0]
                kube.create(collection, peering_object(name, namespace))
        except KubeError as exc:
            problems.append(str(exc))
    return problems
