"""The operator's view of the cluster: informers per kind and watched namespace, read by every reconcile.

What is watched, and why that much and no more:
- LanguageModels: all of them in scope (the reconcile reads its model from here, not with a GET);
- RayServices: all of them in scope, but only those labelled ``lmops.io/model`` are kept whole: of the others
  only the name and owners are kept, enough to see that a foreign RayService sits at a model's name (the
  operator reports it rather than overwrite it);
- RayClusters, ControllerRevisions, Services, PodDisruptionBudgets, NetworkPolicies: those labelled
  ``lmops.io/model`` (KubeRay copies a RayService's labels onto its RayClusters); their status is read by no
  decision, so a change to it alone (a PDB's, kept by the disruption controller) queues nothing;
- with peering, kopf's peering objects, to know when this replica may act (``peering.peering_allows``).
Secrets and ConfigMaps are not watched: only a quality gate reads them (an API key, an evaluation set), once
per gate run during a rollout, never at rest; watching them would need list/watch on every Secret in the
namespace, which the chart does not grant (``rbac.secretReads`` is get-only and may name the Secrets).

A change to any object enqueues its model (``on_model``): the model's own events, a child's label, and for a
foreign RayService its name. The staleness rule is the informers' (``k8s.informer``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from lmops_operator.k8s.client import Kube
from lmops_operator.k8s.informer import Cached, Informer, OnChange, strip_server_fields
from lmops_operator.k8s.resources import (
    CLUSTER_KOPF_PEERING,
    CONTROLLER_REVISION,
    KOPF_PEERING,
    LANGUAGE_MODEL,
    NETWORK_POLICY,
    PDB,
    RAY_CLUSTER,
    RAY_SERVICE,
    SERVICE,
    Resource,
)
from lmops_operator.names import MODEL_LABEL, ray_service_name
from lmops_operator.planning.children import ObservedChildren
from lmops_operator.planning.standby import standby_ray_service_name

log = logging.getLogger(__name__)
LABELLED = (RAY_CLUSTER, CONTROLLER_REVISION, SERVICE, PDB, NETWORK_POLICY)
_BY_KIND = {r.kind: r for r in (LANGUAGE_MODEL, RAY_SERVICE, *LABELLED)}


def stub_foreign(obj: dict[str, Any]) -> dict[str, Any]:
    """A RayService without the model label: kept as its name and owners only (it is not ours to read)."""
    meta = obj.get("metadata") or {}
    if MODEL_LABEL in (meta.get("labels") or {}):
        return strip_server_fields(obj)
    keep = ("name", "namespace", "labels", "ownerReferences", "resourceVersion", "uid")
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {k: meta[k] for k in keep if k in meta},
    }


class Caches:
    """Every informer of one operator; ``on_model(namespace, name)`` hears of every change to a model's
    world."""

    def __init__(
        self,
        kube: Kube,
        namespaces: Sequence[str],
        on_model: Callable[[str, str], None],
        *,
        peering_name: str | None = None,
    ) -> None:
        self.on_model = on_model
        # (kind, namespace, name) -> the version of the operator's last write of it (see ``settled``)
        self.written: dict[tuple[str, str, str], int] = {}
        scopes: list[str | None] = [*namespaces] or [None]
        self._informers: dict[str, dict[str | None, Informer]] = {}
        for resource in (LANGUAGE_MODEL, RAY_SERVICE, *LABELLED):
            selector = MODEL_LABEL if resource in LABELLED else None
            trim = stub_foreign if resource is RAY_SERVICE else strip_server_fields
            self._informers[resource.kind] = {
                scope: Informer(
                    kube,
                    resource,
                    scope,
                    self._changed(resource),
                    label_selector=selector,
                    model_label=MODEL_LABEL,
                    trim=trim,
                    status_matters=resource not in LABELLED,
                )
                for scope in scopes
            }
        self.peering: list[Informer] = []
        if peering_name is not None:
            resource = KOPF_PEERING if namespaces else CLUSTER_KOPF_PEERING
            self.peering = [
                Informer(
                    kube,
                    resource,
                    scope,
                    lambda old, new: None,  # read by the operator's gate, which polls
                    field_selector=f"metadata.name={peering_name}",
                )
                for scope in scopes
            ]

    def _changed(self, resource: Resource) -> OnChange:
        def changed(old: Cached | None, new: Cached | None) -> None:
            keys = set()
            for entry in (old, new):
                if entry is None:
                    continue
                if resource is LANGUAGE_MODEL:
                    keys.add((entry.namespace, entry.name))
                elif entry.model:
                    keys.add((entry.namespace, entry.model))
                elif resource is RAY_SERVICE:  # a foreign one at a model's name
                    keys.add((entry.namespace, entry.name))
            for namespace, name in keys:
                self.on_model(namespace, name)

        return changed

    def _all(self) -> Iterable[Informer]:
        for by_scope in self._informers.values():
            yield from by_scope.values()
        yield from self.peering

    def start(self) -> None:
        for informer in self._all():
            informer.start()

    def stop(self) -> None:
        for informer in self._all():
            informer.request_stop()
        for informer in self._all():
            informer.stop()

    @property
    def synced(self) -> bool:
        return all(informer.synced.is_set() for informer in self._all())

    def _informer(self, kind: str, namespace: str) -> Informer | None:
        by_scope = self._informers.get(kind) or {}
        # ``is None``, not ``or``: an informer holding no objects has length 0 and is falsy, and the first
        # object the operator writes into an empty namespace must still be remembered.
        scoped = by_scope.get(namespace)
        return scoped if scoped is not None else by_scope.get(None)

    # --- what a reconcile reads ---------------------------------------------------------------------------

    def model(self, namespace: str, name: str) -> dict[str, Any] | None:
        informer = self._informer(LANGUAGE_MODEL.kind, namespace)
        entry = informer.get(namespace, name) if informer is not None else None
        return entry.body() if entry is not None else None

    def children(self, namespace: str, model: str) -> ObservedChildren:
        objects: dict[tuple[str, str], Mapping[str, Any]] = {}
        for kind in (RAY_SERVICE.kind, *(r.kind for r in LABELLED)):
            informer = self._informer(kind, namespace)
            if informer is None:
                continue
            for entry in informer.of_model(namespace, model):
                objects[(kind, entry.name)] = entry.body()
        ray_services = self._informer(RAY_SERVICE.kind, namespace)
        for name in (ray_service_name(model), standby_ray_service_name(model)):
            found = ray_services.get(namespace, name) if ray_services is not None else None
            if found is not None:
                objects[(RAY_SERVICE.kind, name)] = found.body()
        return ObservedChildren(objects)

    def fingerprint(self, namespace: str, model: str) -> tuple[tuple[str, str, int], ...]:
        """The versions of the model and of everything ``children`` would return: equal fingerprints, equal
        inputs to the planner (no object is parsed to compute it)."""
        out: list[tuple[str, str, int]] = []
        models = self._informer(LANGUAGE_MODEL.kind, namespace)
        entry = models.get(namespace, model) if models is not None else None
        out.append((LANGUAGE_MODEL.kind, model, entry.content_version if entry is not None else -1))
        for kind in (RAY_SERVICE.kind, *(r.kind for r in LABELLED)):
            informer = self._informer(kind, namespace)
            if informer is not None:
                out += [(kind, e.name, e.content_version) for e in informer.of_model(namespace, model)]
        ray_services = self._informer(RAY_SERVICE.kind, namespace)
        for name in (ray_service_name(model), standby_ray_service_name(model)):
            found = ray_services.get(namespace, name) if ray_services is not None else None
            out.append((RAY_SERVICE.kind, name, found.content_version if found is not None else -1))
        return tuple(out)

    def ray_cluster(self, namespace: str, name: str) -> dict[str, Any] | None:
        informer = self._informer(RAY_CLUSTER.kind, namespace)
        entry = informer.get(namespace, name) if informer is not None else None
        return entry.body() if entry is not None else None

    def peerings(self) -> list[dict[str, Any]]:
        return [entry.body() for informer in self.peering for entry in informer.entries()]

    def remember(self, obj: Mapping[str, Any]) -> None:
        """The response to one of the operator's writes: into the cache now (see ``k8s.informer``)."""
        resource = _BY_KIND.get(str(obj.get("kind")))
        namespace = str((obj.get("metadata") or {}).get("namespace") or "")
        informer = self._informer(resource.kind, namespace) if resource is not None else None
        if informer is not None:
            informer.remember(obj)
            meta = obj.get("metadata") or {}
            version = str(meta.get("resourceVersion") or "0")
            self.written[(informer.resource.kind, namespace, str(meta.get("name")))] = (
                int(version) if version.isdigit() else 0
            )

    def settled(
        self, namespace: str, model: str, start: tuple[tuple[str, str, int], ...]
    ) -> tuple[tuple[str, str, int], ...]:
        """The fingerprint a reconcile that read ``start`` leaves: the model's world now, except that what
        changed meanwhile by another hand keeps a version no fingerprint will match, so the next event
        plans again (only the operator's own writes are known to have been taken into account)."""
        before = {(kind, name): version for kind, name, version in start}
        out = []
        for kind, name, _ in self.fingerprint(namespace, model):
            ours = self.written.get((kind, namespace, name))
            if ours is not None and ours > before.get((kind, name), -1):
                out.append((kind, name, ours))
            else:
                out.append((kind, name, before.get((kind, name), -2)))
        now = {(kind, name) for kind, name, _ in out}
        out += [("Gone", f"{kind}/{name}", -2) for kind, name in before if (kind, name) not in now]
        return tuple(out)

    def sizes(self) -> dict[str, int]:
        """Objects cached per kind (logged once synced)."""
        return {kind: sum(len(i) for i in by_scope.values()) for kind, by_scope in self._informers.items()}
