"""Autoscaling and cluster failover against the real API server (KubeRay's side faked through status).

- every autoscaling example: the Serve autoscaling_config of each revision and the worker bounds;
- a min/max edit reaches the RayService AND the live RayCluster KubeRay named in the RayService status
  (KubeRay itself does not push those bounds into a running cluster, kuberay#4568);
- standby: `<name>-standby` pinned to its zone; the Service switches to it after switchAfterSeconds
  without primary serve endpoints, back when the primary recovers, and the standby goes when disabled.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from lmops_operator.api import load_language_model
from lmops_operator.builders.rayservice import revision_slots
from lmops_operator.k8s.client import Kube
from lmops_operator.k8s.ray_clusters import RAY_CLUSTER
from lmops_operator.k8s.resources import LANGUAGE_MODEL, RAY_SERVICE, SERVICE
from lmops_operator.planning.standby import STANDBY_LABEL, ZONE_LABEL
from testkit.controlplane import ControlPlane
from tests.controlplane.conftest import eventually
from tests.unit.planner_helpers import EXAMPLES, kuberay_status

pytestmark = pytest.mark.slow


def _apply(plane: ControlPlane, body: dict[str, Any]) -> None:
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))


def _server_apps(ray_service: dict[str, Any]) -> list[dict[str, Any]]:
    apps = yaml.safe_load(ray_service["spec"]["serveConfigV2"])["applications"]
    return [a for a in apps if a["name"].startswith("rev-")]


def _workers(obj: dict[str, Any], *, cluster: bool = False) -> dict[str, Any]:
    spec = obj["spec"] if cluster else obj["spec"]["rayClusterConfig"]
    group: dict[str, Any] = spec["workerGroupSpecs"][0]
    return group


def _fake_status(admin: Kube, namespace: str, name: str, *, ready: bool, cluster: str) -> None:
    ray_service = admin.get(RAY_SERVICE.item(namespace, name))
    assert ray_service is not None
    apps = {
        a["name"]: "RUNNING" for a in yaml.safe_load(ray_service["spec"]["serveConfigV2"])["applications"]
    }
    status = kuberay_status(apps, ready=ready)
    status["activeServiceStatus"]["rayClusterName"] = cluster
    admin.merge_patch(RAY_SERVICE.item(namespace, name) + "/status", {"status": status})


def _ray_cluster(namespace: str, name: str, group: str, low: int, high: int) -> dict[str, Any]:
    """A RayCluster as KubeRay would have created it for the RayService (only what the schema needs, and the
    RayService's labels, which KubeRay copies onto its clusters)."""
    container = {"name": "ray", "image": "ghcr.io/lmops/runtime:test"}
    model = name.rsplit("-", 1)[0]
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": namespace, "labels": {"lmops.io/model": model}},
        "spec": {
            "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [container]}}},
            "workerGroupSpecs": [
                {
                    "groupName": group,
                    "replicas": low,
                    "minReplicas": low,
                    "maxReplicas": high,
                    "rayStartParams": {},
                    "template": {"spec": {"containers": [container]}},
                }
            ],
        },
    }


def test_every_example_gets_its_autoscaling_in_the_rayservice(
    controlplane: ControlPlane, admin: Kube, namespace: str, start_operator: Any
) -> None:
    start_operator((namespace,))
    bodies = [yaml.safe_load(p.read_text()) for p in EXAMPLES]
    for body in bodies:
        body["metadata"]["namespace"] = namespace
        _apply(controlplane, body)
    for body in bodies:
        name = body["metadata"]["name"]
        spec = load_language_model(body).spec
        scaling = spec.autoscaling
        path = RAY_SERVICE.item(namespace, name)
        ray_service = eventually(lambda p=path: admin.get(p), what=name)  # type: ignore[misc]
        (app,) = _server_apps(ray_service)
        config = app["deployments"][0]["autoscaling_config"]
        assert config == {
            "min_replicas": scaling.min_replicas,
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests,
            "upscale_delay_s": float(scaling.upscale_delay_seconds),
            "downscale_delay_s": float(scaling.downscale_delay_seconds),
        }, name
        assert app["deployments"][0]["max_ongoing_requests"] == spec.serving.max_ongoing_requests
        workers = _workers(ray_service)
        assert workers["minReplicas"] == scaling.min_replicas, name
        assert workers["maxReplicas"] == scaling.max_replicas * revision_slots(spec), name
        assert ray_service["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True


def test_min_max_edit_reaches_the_rayservice_and_the_live_raycluster(
    controlplane: ControlPlane, admin: Kube, namespace: str, start_operator: Any
) -> None:
    start_operator((namespace,))
    body = yaml.safe_load((EXAMPLES[0].parent / "scale-to-zero.yaml").read_text())
    body["metadata"]["namespace"] = namespace
    name = body["metadata"]["name"]
    _apply(controlplane, body)
    eventually(lambda: admin.get(RAY_SERVICE.item(namespace, name)), what="RayService")
    # KubeRay created the cluster with older bounds and reports it as the active one.
    cluster = f"{name}-x7k2p"
    admin.create(RAY_CLUSTER.collection(namespace), _ray_cluster(namespace, cluster, "gpu", 0, 9))
    _fake_status(admin, namespace, name, ready=True, cluster=cluster)

    def bounds() -> tuple[int, int, int]:
        group = _workers(admin.get(RAY_CLUSTER.item(namespace, cluster)) or {}, cluster=True)
        return group["minReplicas"], group["maxReplicas"], group["replicas"]

    eventually(lambda: bounds() == (0, 4, 0), what="RayCluster bounds 0..4 (2 per revision slot)")
    controlplane.patch_model(namespace, name, {"spec": {"autoscaling": {"minReplicas": 1, "maxReplicas": 3}}})
    eventually(
        lambda: _workers(admin.get(RAY_SERVICE.item(namespace, name)) or {})["maxReplicas"] == 6,
        what="RayService maxReplicas 6",
    )
    # replicas lifted into the new range as the autoscaler would
    eventually(lambda: bounds() == (1, 6, 1), what="RayCluster bounds 1..6")
    (app,) = _server_apps(admin.get(RAY_SERVICE.item(namespace, name)) or {})
    assert app["deployments"][0]["autoscaling_config"]["min_replicas"] == 1
    assert app["deployments"][0]["autoscaling_config"]["max_replicas"] == 3


def test_standby_takes_over_after_switch_after_seconds_and_hands_back(
    controlplane: ControlPlane, admin: Kube, namespace: str, start_operator: Any
) -> None:
    start_operator((namespace,))
    body = yaml.safe_load((EXAMPLES[0].parent / "failover.yaml").read_text())
    body["metadata"]["namespace"] = namespace
    body["spec"]["failover"]["standby"]["switchAfterSeconds"] = 3
    _apply(controlplane, body)
    standby = eventually(lambda: admin.get(RAY_SERVICE.item(namespace, "chat-standby")), what="standby")
    primary = admin.get(RAY_SERVICE.item(namespace, "chat"))
    assert primary is not None
    assert standby["spec"]["serveConfigV2"] == primary["spec"]["serveConfigV2"]
    assert _workers(standby)["template"]["spec"]["nodeSelector"][ZONE_LABEL] == "us-east-1b"
    assert standby["metadata"]["ownerReferences"][0]["kind"] == "LanguageModel"

    def selector() -> dict[str, str]:
        return dict((admin.get(SERVICE.item(namespace, "chat")) or {})["spec"]["selector"])

    def standby_status() -> dict[str, Any]:
        lm = admin.get(LANGUAGE_MODEL.item(namespace, "chat")) or {}
        return dict((lm.get("status") or {}).get("standby") or {})

    # Primary first: the standby must never be switched to while the primary serves.
    _fake_status(admin, namespace, "chat", ready=True, cluster="chat-a1b2c")
    eventually(lambda: "primaryUnreadySince" not in standby_status(), what="primary seen ready")
    _fake_status(admin, namespace, "chat-standby", ready=True, cluster="chat-standby-q1w2e")
    eventually(lambda: standby_status().get("standbyReady") is True, what="standby seen ready")
    assert selector() == {"lmops.io/model": "chat", "ray.io/serve": "true"}
    assert standby_status()["serving"] == "primary"

    _fake_status(admin, namespace, "chat", ready=False, cluster="chat-a1b2c")
    eventually(lambda: standby_status().get("primaryUnreadySince"), what="countdown started")
    switched = eventually(lambda: standby_status().get("serving") == "standby", timeout_s=60, what="switch")
    assert switched
    assert selector() == {STANDBY_LABEL: "chat", "ray.io/serve": "true"}
    unready = standby_status()
    waited = _seconds_between(unready["primaryUnreadySince"], unready["switchedAt"])
    assert waited >= 3, unready

    _fake_status(admin, namespace, "chat", ready=True, cluster="chat-a1b2c")
    eventually(lambda: standby_status().get("serving") == "primary", what="switch back")
    assert selector() == {"lmops.io/model": "chat", "ray.io/serve": "true"}

    controlplane.patch_model(namespace, "chat", {"spec": {"failover": {"standby": {"enabled": False}}}})
    eventually(lambda: admin.get(RAY_SERVICE.item(namespace, "chat-standby")) is None, what="standby deleted")
    eventually(lambda: not standby_status(), what="status.standby cleared")


def _seconds_between(a: str, b: str) -> float:
    from datetime import datetime

    def parse(value: str) -> datetime:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))

    return (parse(b) - parse(a)).total_seconds()
