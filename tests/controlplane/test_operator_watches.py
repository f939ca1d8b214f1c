"""The operator reads the world from its watches: what that must mean on the real API server.

- a child deleted or edited by hand comes back from the watch event (there is no periodic resync to wait
  for: a model at rest is reconciled only when something of its own changes);
- KubeRay's status reaches the model's status in one reconcile of the RayService event;
- a restarted operator lists once, reconciles every model, and sends nothing else: no GET, no write.
The 1,000-model restart is ``bench/operator_scale.py``'s forced resync (too long for CI).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from lmops_operator import observability
from lmops_operator.k8s.client import Kube, api_client_from_kubeconfig
from lmops_operator.k8s.resources import LANGUAGE_MODEL, NETWORK_POLICY, PDB, RAY_SERVICE, SERVICE
from testkit.controlplane import ControlPlane
from tests.controlplane.conftest import CountingApi, eventually
from tests.controlplane.test_operator import _apply, _example, _fake_kuberay, _status

pytestmark = pytest.mark.slow

# Far below any resync period (there is none at rest) and above a reconcile on a loaded CI machine.
RESTORE_S = 10.0


def _ready(admin: Kube, namespace: str, name: str) -> None:
    eventually(lambda: admin.get(RAY_SERVICE.item(namespace, name)), what=f"RayService {name}")
    _fake_kuberay(admin, namespace, name)
    eventually(lambda: _status(admin, namespace, name).get("phase") == "Ready", what=f"{name} Ready")


def _reconciles() -> float:
    value: float = observability.RECONCILES._value.get()
    return value


def test_children_deleted_or_edited_by_hand_are_restored_from_the_watch(
    controlplane: ControlPlane, admin: Kube, namespace: str, start_operator: Any
) -> None:
    start_operator((namespace,))
    _apply(controlplane, _example("tiny", namespace))
    _ready(admin, namespace, "tiny")
    service = admin.get(SERVICE.item(namespace, "tiny")) or {}
    config = (admin.get(RAY_SERVICE.item(namespace, "tiny")) or {})["spec"]["serveConfigV2"]

    admin.delete(SERVICE.item(namespace, "tiny"))
    restored = eventually(
        lambda: admin.get(SERVICE.item(namespace, "tiny")), timeout_s=RESTORE_S, what="Service recreated"
    )
    assert restored["metadata"]["uid"] != service["metadata"]["uid"]
    assert restored["spec"]["selector"] == service["spec"]["selector"]

    admin.delete(NETWORK_POLICY.item(namespace, "tiny-ray"))
    eventually(
        lambda: admin.get(NETWORK_POLICY.item(namespace, "tiny-ray")),
        timeout_s=RESTORE_S,
        what="NetworkPolicy",
    )

    admin.merge_patch(RAY_SERVICE.item(namespace, "tiny"), {"spec": {"serveConfigV2": "applications: []"}})
    eventually(
        lambda: (admin.get(RAY_SERVICE.item(namespace, "tiny")) or {})["spec"]["serveConfigV2"] == config,
        timeout_s=RESTORE_S,
        what="serve config restored",
    )
    pdb = admin.get(PDB.item(namespace, "tiny-workers")) or {}
    admin.merge_patch(PDB.item(namespace, "tiny-workers"), {"spec": {"maxUnavailable": 7}})
    eventually(
        lambda: (admin.get(PDB.item(namespace, "tiny-workers")) or {})["spec"] == pdb["spec"],
        timeout_s=RESTORE_S,
        what="PDB restored",
    )


def test_kuberay_status_reaches_the_model_in_one_reconcile(
    controlplane: ControlPlane, admin: Kube, namespace: str, start_operator: Any
) -> None:
    start_operator((namespace,))
    _apply(controlplane, _example("tiny", namespace))
    eventually(lambda: _status(admin, namespace, "tiny").get("phase") == "Deploying", what="Deploying")
    time.sleep(1.0)  # let the create's own events settle
    before = _reconciles()
    started = time.monotonic()
    _fake_kuberay(admin, namespace, "tiny")
    eventually(lambda: _status(admin, namespace, "tiny").get("phase") == "Ready", timeout_s=RESTORE_S)
    took = time.monotonic() - started
    # One reconcile for the status change; a second may start if the watch splits KubeRay's patch.
    assert _reconciles() - before <= 2, _reconciles() - before
    assert took < 5.0, took


def test_restart_lists_once_and_sends_nothing_else(
    controlplane: ControlPlane,
    admin: Kube,
    namespace: str,
    start_operator: Any,
    operator_credentials: Any,
) -> None:
    n = 20
    first = start_operator((namespace,))
    body = yaml.safe_load(yaml.safe_dump(_example("tiny", namespace)))
    names = [f"m{i:02d}" for i in range(n)]
    for name in names:
        body["metadata"]["name"] = name
        admin.create(LANGUAGE_MODEL.collection(namespace), body)
    for name in names:
        _ready(admin, namespace, name)
    first.stop()

    counting = CountingApi(api_client_from_kubeconfig(str(operator_credentials)))
    before = _reconciles()
    second = start_operator((namespace,), api_client=counting.api)
    eventually(lambda: _reconciles() - before >= n, what=f"{n} reconciles after the restart")
    time.sleep(2.0)  # anything a reconcile would still send
    assert second.run.caches is not None
    informers = len(second.run.caches.sizes())
    # One list and one watch per informer (7 kinds in one namespace), then nothing: no GET, no write.
    assert counting.methods == {"GET": 2 * informers}, counting.methods
    assert all(_status(admin, namespace, name).get("phase") == "Ready" for name in names)
