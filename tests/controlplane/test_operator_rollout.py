"""Operator wiring that spans reconciles: a canary walked by the timer on fake Router metrics, and peering."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from lmops_operator.k8s.client import Kube, api_client_from_kubeconfig
from lmops_operator.k8s.peering import peering_crds
from lmops_operator.k8s.resources import RAY_SERVICE, SERVICE
from lmops_operator.metrics_source import FakeMetricsSource
from lmops_operator.planning.metrics import MetricsSnapshot
from testkit.controlplane import ControlPlane
from tests.controlplane.conftest import CountingApi, eventually
from tests.controlplane.test_operator import _apply, _example, _fake_kuberay, _revisions, _serve_apps, _status
from tests.support.chart import install_operator_rbac

pytestmark = pytest.mark.slow


def _canary_model(namespace: str) -> dict[str, Any]:
    return _example(
        "tiny",
        namespace,
        rollout={
            "strategy": "Canary",
            "steps": [{"weight": 50, "pauseSeconds": 0}],
            "analysis": {"minRequests": 0, "intervalSeconds": 5},
        },
    )


def _new_revision(admin: Kube, namespace: str, name: str) -> str:
    revisions = eventually(
        lambda: len(r := _revisions(admin, namespace, name)) == 2 and r, what="2 revisions"
    )
    label: str = next(r for r in revisions if r["revision"] == 2)["metadata"]["labels"]["lmops.io/revision"]
    return label


def test_canary_is_walked_by_the_timer_and_promoted(
    controlplane: ControlPlane, admin: Kube, namespace: str, start_operator: Any
) -> None:
    operator = start_operator((namespace,))
    source = operator.run.metrics_source
    assert isinstance(source, FakeMetricsSource)
    source.set(MetricsSnapshot(epoch="e1", time=datetime.now(UTC), bounds=(), revisions={}))
    _apply(controlplane, _canary_model(namespace))
    eventually(lambda: admin.get(RAY_SERVICE.item(namespace, "tiny")), what="RayService")
    _fake_kuberay(admin, namespace, "tiny")
    first = eventually(lambda: _status(admin, namespace, "tiny").get("stableRevision"), what="stable")
    assert source.reads == 0, "a first deploy has no canary to analyse: no Router reads"

    controlplane.patch_model(namespace, "tiny", {"spec": {"model": {"revision": "v2"}}})
    new = _new_revision(admin, namespace, "tiny")
    eventually(
        lambda: len(_serve_apps(admin.get(RAY_SERVICE.item(namespace, "tiny")) or {})) == 3,
        what="canary deployed",
    )
    _fake_kuberay(admin, namespace, "tiny")  # the canary's app is RUNNING too
    status = eventually(
        lambda: (s := _status(admin, namespace, "tiny")).get("stableRevision") == new and s,
        timeout_s=90,
        what="canary promoted by the timer",
    )
    assert source.reads >= 1
    assert status["lastAnalysis"]["verdict"] == "Pass"
    assert status.get("canaryRevision") is None
    eventually(
        lambda: _serve_apps(admin.get(RAY_SERVICE.item(namespace, "tiny")) or {}) == ["lm", f"rev-{new}"],
        what=f"{first} removed from the serve config",
    )
    _fake_kuberay(admin, namespace, "tiny")
    eventually(lambda: _status(admin, namespace, "tiny").get("phase") == "Ready", what="Ready")


def test_peering_lets_one_operator_act_at_a_time(
    controlplane: ControlPlane, admin: Kube, namespace: str, start_operator: Any
) -> None:
    if controlplane.kubectl("get", "crd", "kopfpeerings.kopf.dev", check=False).returncode != 0:
        controlplane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(peering_crds()))
        controlplane.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s",
            "crd/kopfpeerings.kopf.dev", "crd/clusterkopfpeerings.kopf.dev",
        )  # fmt: skip
    # The chart's identity for a namespaced install with peering: its Role grants the KopfPeering.
    release = f"peer-{uuid.uuid4().hex[:6]}"
    identity = install_operator_rbac(
        controlplane,
        {"operator": {"watchNamespaces": [namespace], "peeringName": "lmops-test"}},
        release=release,
        namespace=release,
    )
    leader = start_operator(
        (namespace,), priority=200, peering_name="lmops-test", kubeconfig=identity.kubeconfig
    )
    # The follower's own watches see every change too; it must not act on any of them while the leader lives.
    follower_api = CountingApi(api_client_from_kubeconfig(str(identity.kubeconfig)))
    follower = start_operator(
        (namespace,),
        priority=100,
        peering_name="lmops-test",
        kubeconfig=identity.kubeconfig,
        api_client=follower_api.api,
    )
    peering = eventually(
        lambda: (
            len(
                (
                    p := admin.get(f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings/lmops-test") or {}
                ).get("status")
                or {}
            )
            == 2
            and p
        ),
        what="both operators in the peering object",
    )
    assert sorted(peer["priority"] for peer in peering["status"].values()) == [100, 200]

    _apply(controlplane, _example("tiny", namespace))
    eventually(lambda: admin.get(RAY_SERVICE.item(namespace, "tiny")), what="RayService from the leader")
    _fake_kuberay(admin, namespace, "tiny")
    eventually(lambda: _status(admin, namespace, "tiny").get("phase") == "Ready", what="Ready by the leader")
    admin.delete(SERVICE.item(namespace, "tiny"))  # a child gone: both see it, only the leader restores it
    eventually(lambda: admin.get(SERVICE.item(namespace, "tiny")), what="Service restored by the leader")
    assert follower_api.writes == 0, follower_api.methods

    leader.stop()  # the follower takes over once the leader has left the peering
    controlplane.patch_model(namespace, "tiny", {"spec": {"model": {"revision": "v2"}}})
    _new_revision(admin, namespace, "tiny")
    assert follower.alive
