"""kopf's peering CRDs (kopf.dev/v1 KopfPeering, ClusterKopfPeering): two operator replicas use them to
agree that only one acts. kopf does not ship them in its wheel, so lmops provides them (chart and tests)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
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


def _alive(info: Mapping[str, Any], now: datetime) -> bool:
    try:
        seen = datetime.fromisoformat(str(info.get("lastseen")))
        lifetime = int(info.get("lifetime") or 60)
    except (TypeError, ValueError):
        return True  # unreadable: assume alive, the cautious side
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=UTC)
    return seen + timedelta(seconds=lifetime) > now


def peering_allows(
    peerings: Sequence[Mapping[str, Any]], identity: str, priority: int, now: datetime
) -> bool:
    """Whether this replica may act, by kopf's own rule read from the peering objects it keeps.

    kopf pauses its handlers while another live peer has a higher priority, or the same one; reconciles that
    the operator's own watches start need the same answer, and kopf does not publish it. So: act only once
    this replica's heartbeat is in every peering object (the others can see it too), and no other live peer
    (``lastseen + lifetime`` not passed) has a priority at least as high.
    """
    if not peerings:
        return False
    for obj in peerings:
        peers = obj.get("status") or {}
        if identity not in peers:
            return False
        for other, info in peers.items():
            if other == identity or not isinstance(info, Mapping) or not _alive(info, now):
                continue
            if int(info.get("priority") or 0) >= priority:
                return False
    return True
