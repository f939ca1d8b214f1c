"""The operator against the real API server: children, status, edits, resync, GC, restart, refusals.

KubeRay is not running here; tests write ``RayService/status`` the way KubeRay would (the approach KubeRay's
own envtest suites take for consumers of RayService). Garbage collection is the real
kube-controller-manager's.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import yaml

from lmops_operator import observability
from lmops_operator.k8s.cache import Caches
from lmops_operator.k8s.client import Kube, api_client_from_kubeconfig
from lmops_operator.k8s.reconcile import ReconcileContext, reconcile
from lmops_operator.k8s.resources import (
    CONTROLLER_REVISION,
    LANGUAGE_MODEL,
    NETWORK_POLICY,
    PDB,
    RAY_SERVICE,
    SERVICE,
)
from lmops_operator.settings import Settings
from testkit.controlplane import ControlPlane
from tests.controlplane.conftest import CountingApi, eventually
from tests.unit.planner_helpers import REPO, kuberay_status

pytestmark = pytest.mark.slow


def _example(name: str, namespace: str, **spec_changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((REPO / "examples" / f"{name}.yaml").read_text())
    body["metadata"]["namespace"] = namespace
    for key, value in spec_changes.items():
        body["spec"][key] = {**body["spec"].get(key, {}), **value}
    return body


def _apply(plane: ControlPlane, body: dict[str, Any]) -> None:
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))


def _status(admin: Kube, namespace: str, name: str) -> dict[str, Any]:
    body = admin.get(LANGUAGE_MODEL.item(namespace, name)) or {}
    status: dict[str, Any] = body.get("status") or {}
    return status


def _revisions(admin: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    return admin.list(CONTROLLER_REVISION.collection(namespace), f"lmops.io/model={name}")


def _serve_apps(ray_service: dict[str, Any]) -> list[str]:
    return [app["name"] for app in yaml.safe_load(ray_service["spec"]["serveConfigV2"])["applications"]]


def _fake_kuberay(admin: Kube, namespace: str, name: str, **kwargs: Any) -> None:
    """Report every app of the live serve config as RUNNING (as KubeRay does once Serve is up)."""
    ray_service = admin.get(RAY_SERVICE.item(namespace, name))
    assert ray_service is not None
    apps = dict.fromkeys(_serve_apps(ray_service), "RUNNING")
    admin.merge_patch(
        RAY_SERVICE.item(namespace, name) + "/status", {"status": kuberay_status(apps, **kwargs)}
    )


def _phase(admin: Kube, namespace: str, name: str, phase: str) -> Any:
    return lambda: _status(admin, namespace, name).get("phase") == phase


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def _events(plane: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    out = plane.kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json"
    ).stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def _resync_requests(credentials: str, namespace: str, name: str) -> tuple[int, int]:
    """One reconcile on caches synced from the API server: (writes it reports, requests it sent)."""
    counting = CountingApi(api_client_from_kubeconfig(credentials))
    kube = Kube(counting.api)
    caches = Caches(kube, (namespace,), lambda *_: None)
    caches.start()
    try:
        eventually(lambda: caches.synced, what="caches synced")
        assert caches.model(namespace, name) is not None
        before = sum(counting.methods.values())
        ctx = ReconcileContext(
            kube=kube, caches=caches, settings=Settings(default_runtime_image="ghcr.io/lmops/runtime:test")
        )
        outcome = asyncio.run(reconcile(ctx, namespace, name))
        return outcome.writes, sum(counting.methods.values()) - before
    finally:
        caches.stop()


def _versions(admin: Kube, namespace: str, name: str) -> dict[str, str]:
    paths = [
        LANGUAGE_MODEL.item(namespace, name),
        RAY_SERVICE.item(namespace, name),
        SERVICE.item(namespace, name),
        PDB.item(namespace, f"{name}-workers"),
    ]
    out = {p: (admin.get(p) or {})["metadata"]["resourceVersion"] for p in paths}
    for revision in _revisions(admin, namespace, name):
        out[revision["metadata"]["name"]] = revision["metadata"]["resourceVersion"]
    return out


def test_lifecycle_create_ready_edit_resync_delete(
    controlplane: ControlPlane, admin: Kube, namespace: str, start_operator: Any, operator_credentials: Any
) -> None:
    start_operator((namespace,))
    _apply(controlplane, _example("gpt2-canary", namespace))
    lm = eventually(lambda: admin.get(LANGUAGE_MODEL.item(namespace, "gpt2")), what="LanguageModel")
    uid = lm["metadata"]["uid"]

    ray_service = eventually(lambda: admin.get(RAY_SERVICE.item(namespace, "gpt2")), what="RayService")
    service = eventually(lambda: admin.get(SERVICE.item(namespace, "gpt2")), what="Service")
    pdb = eventually(lambda: admin.get(PDB.item(namespace, "gpt2-workers")), what="PDB")
    policy = eventually(lambda: admin.get(NETWORK_POLICY.item(namespace, "gpt2-ray")), what="NetworkPolicy")
    (revision,) = eventually(lambda: _revisions(admin, namespace, "gpt2"), what="ControllerRevision")
    for child in (ray_service, service, pdb, policy, revision):
        (ref,) = child["metadata"]["ownerReferences"]
        assert ref["uid"] == uid and ref["controller"] is True and ref["kind"] == "LanguageModel"
    assert revision["revision"] == 1 and revision["data"]["model"]["source"] == "hf://openai-community/gpt2"
    assert service["spec"]["selector"] == {"lmops.io/model": "gpt2", "ray.io/serve": "true"}
    assert service["spec"]["ports"][0]["port"] == 8000
    rev = revision["metadata"]["labels"]["lmops.io/revision"]
    assert _serve_apps(ray_service) == ["lm", f"rev-{rev}"]

    status = eventually(
        lambda: (s := _status(admin, namespace, "gpt2")).get("phase") == "Deploying" and s, what="Deploying"
    )
    assert status["endpoint"] == f"http://gpt2.{namespace}.svc:8000/v1"
    assert status["rayServiceName"] == "gpt2" and status["observedGeneration"] == 1
    assert _condition(status, "Ready")["status"] == "False"

    # KubeRay reports the Serve apps RUNNING: the model becomes Ready, and kubectl wait sees it.
    _fake_kuberay(admin, namespace, "gpt2")
    waited = controlplane.kubectl(
        "wait", "--for=condition=Ready", "-n", namespace, "lm/gpt2", "--timeout=90s", check=False
    )
    assert waited.returncode == 0, waited.stderr
    status = _status(admin, namespace, "gpt2")
    assert status["phase"] == "Ready" and status["stableRevision"] == rev
    assert status["traffic"] == [{"revision": rev, "weight": 100}]
    assert status["readyReplicas"] == 1  # KubeRay's ready worker pods
    reasons = {e["reason"] for e in _events(controlplane, namespace, "gpt2")}
    assert {"RevisionCreated", "ChildrenCreated", "Ready"} <= reasons
    created = next(e for e in _events(controlplane, namespace, "gpt2") if e["reason"] == "ChildrenCreated")
    assert created["message"] == (
        "RayService gpt2, Service gpt2, PodDisruptionBudget gpt2-workers, NetworkPolicy gpt2-ray created"
    )
    # Nothing repeated for a state that did not change: one event of each.
    assert sorted(reasons) == sorted(e["reason"] for e in _events(controlplane, namespace, "gpt2"))

    # A resync of a converged model sends no request at all: everything it reads is in the caches.
    assert _resync_requests(str(operator_credentials), namespace, "gpt2") == (0, 0)

    # Autoscaling edit: same revision, the same RayService updated in place.
    controlplane.patch_model(namespace, "gpt2", {"spec": {"autoscaling": {"maxReplicas": 7}}})
    updated = eventually(
        lambda: (
            (r := admin.get(RAY_SERVICE.item(namespace, "gpt2")))
            and r["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] == 14
            and r
        ),
        what="RayService maxReplicas 14",
    )
    assert updated["metadata"]["uid"] == ray_service["metadata"]["uid"]
    assert len(_revisions(admin, namespace, "gpt2")) == 1
    eventually(lambda: _status(admin, namespace, "gpt2").get("observedGeneration") == 2, what="generation 2")

    # Model edit: a new revision, deployed beside the stable one.
    controlplane.patch_model(namespace, "gpt2", {"spec": {"model": {"revision": "main"}}})
    revisions = eventually(
        lambda: len(r := _revisions(admin, namespace, "gpt2")) == 2 and r, what="2 revisions"
    )
    new = next(r for r in revisions if r["revision"] == 2)["metadata"]["labels"]["lmops.io/revision"]
    eventually(
        lambda: (
            set(
                _serve_apps(
                    admin.get(RAY_SERVICE.item(namespace, "gpt2"))
                    or {"spec": {"serveConfigV2": "applications: []"}}
                )
            )
            == {"lm", f"rev-{rev}", f"rev-{new}"}
        ),
        what="both revisions in the serve config",
    )
    status = eventually(lambda: (s := _status(admin, namespace, "gpt2")).get("observedGeneration") == 3 and s)
    assert status["stableRevision"] == rev
    assert {r["name"] for r in status["revisions"]} == {rev, new}

    # Delete: the garbage collector removes every child.
    controlplane.kubectl("delete", "lm", "gpt2", "-n", namespace, "--wait=false")
    for path in (
        NETWORK_POLICY.item(namespace, "gpt2-ray"),
        RAY_SERVICE.item(namespace, "gpt2"),
        SERVICE.item(namespace, "gpt2"),
        PDB.item(namespace, "gpt2-workers"),
    ):
        eventually(lambda p=path: admin.get(p) is None, timeout_s=120, what=f"{path} deleted")
    eventually(lambda: not _revisions(admin, namespace, "gpt2"), timeout_s=120, what="revisions deleted")


def test_restart_resumes_and_converges(
    controlplane: ControlPlane, admin: Kube, namespace: str, start_operator: Any
) -> None:
    first = start_operator((namespace,))
    _apply(controlplane, _example("tiny", namespace, rollout={"strategy": "Immediate"}))
    eventually(lambda: admin.get(RAY_SERVICE.item(namespace, "tiny")), what="RayService")
    _fake_kuberay(admin, namespace, "tiny")
    eventually(_phase(admin, namespace, "tiny", "Ready"), what="Ready")
    first.stop()

    # Edited while no operator runs: the next one picks it up on resume.
    controlplane.patch_model(namespace, "tiny", {"spec": {"model": {"revision": "v2"}}})
    second = start_operator((namespace,))
    eventually(lambda: len(_revisions(admin, namespace, "tiny")) == 2, what="new revision after restart")
    eventually(
        lambda: len(_serve_apps(admin.get(RAY_SERVICE.item(namespace, "tiny")) or {})) == 3, what="3 apps"
    )
    _fake_kuberay(admin, namespace, "tiny")
    new = next(r for r in _revisions(admin, namespace, "tiny") if r["revision"] == 2)["metadata"]["labels"][
        "lmops.io/revision"
    ]
    eventually(
        lambda: (
            _status(admin, namespace, "tiny").get("stableRevision") == new
            and _status(admin, namespace, "tiny").get("phase") == "Ready"
        ),
        what="new revision stable",
    )
    eventually(
        lambda: _serve_apps(admin.get(RAY_SERVICE.item(namespace, "tiny")) or {}) == ["lm", f"rev-{new}"]
    )
    _fake_kuberay(admin, namespace, "tiny")
    eventually(_phase(admin, namespace, "tiny", "Ready"), what="Ready on the new revision")
    second.stop()

    # A restart with nothing to do: the resume reconcile runs and changes no object at all.
    before = _versions(admin, namespace, "tiny")
    reconciles = observability.RECONCILES._value.get()
    third = start_operator((namespace,))
    eventually(lambda: observability.RECONCILES._value.get() > reconciles, what="resume reconcile")
    assert third.alive
    assert _versions(admin, namespace, "tiny") == before


def test_refused_spec_fails_without_crashing(
    controlplane: ControlPlane, admin: Kube, namespace: str, start_operator: Any
) -> None:
    operator = start_operator((namespace,), allowed_sources=("hf://",))
    _apply(controlplane, _example("tiny", namespace))
    status = eventually(
        lambda: (s := _status(admin, namespace, "tiny")).get("phase") == "Failed" and s, what="Failed"
    )
    ready = _condition(status, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "SourceNotAllowed"
    assert "builtin://tiny" in ready["message"]
    assert admin.get(RAY_SERVICE.item(namespace, "tiny")) is None
    eventually(
        lambda: any(
            e["type"] == "Warning" and e["reason"] == "SourceNotAllowed"
            for e in _events(controlplane, namespace, "tiny")
        ),
        what="Warning event",
    )
    waited = controlplane.kubectl(
        "wait", "--for=condition=Ready", "-n", namespace, "lm/tiny", "--timeout=2s", check=False
    )
    assert waited.returncode != 0

    # trustRemoteCode is forbidden by default; the operator keeps serving the other models.
    _apply(controlplane, _example("gpt2-canary", namespace, model={"trustRemoteCode": True}))
    status = eventually(lambda: (s := _status(admin, namespace, "gpt2")).get("phase") == "Failed" and s)
    assert _condition(status, "Ready")["reason"] == "TrustRemoteCodeForbidden"
    _apply(controlplane, _example("gpt2-canary", namespace, model={"trustRemoteCode": False}))
    eventually(lambda: admin.get(RAY_SERVICE.item(namespace, "gpt2")), what="RayService after the fix")
    eventually(_phase(admin, namespace, "gpt2", "Deploying"), what="Deploying after the fix")
    assert operator.alive


def test_foreign_ray_service_is_reported_not_taken_over(
    controlplane: ControlPlane, admin: Kube, namespace: str, start_operator: Any
) -> None:
    foreign = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "tiny", "namespace": namespace, "labels": {"team": "someone-else"}},
        "spec": {
            "rayClusterConfig": {
                "headGroupSpec": {
                    "rayStartParams": {},
                    "template": {"spec": {"containers": [{"name": "ray-head", "image": "theirs:1"}]}},
                }
            }
        },
    }
    admin.create(RAY_SERVICE.collection(namespace), foreign)
    operator = start_operator((namespace,))
    _apply(controlplane, _example("tiny", namespace))
    status = eventually(
        lambda: (s := _status(admin, namespace, "tiny")).get("phase") == "Degraded" and s, what="Degraded"
    )
    degraded = _condition(status, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "RayServiceNotOwned"
    live = admin.get(RAY_SERVICE.item(namespace, "tiny")) or {}
    assert live["metadata"].get("ownerReferences") is None and "serveConfigV2" not in live["spec"]
    assert operator.alive
