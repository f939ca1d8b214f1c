"""Bad input reaches a running operator and never stops it: generated specs (valid for the API server, odd
for everything after it), quantities no replica can be sized from, and garbage in KubeRay's status. Each
model ends up with a status for its generation (a phase the operator chose, Failed with a reason when it
refuses), and the operator keeps serving a well-formed model created afterwards."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from lmops_operator.k8s.client import Kube
from lmops_operator.k8s.resources import LANGUAGE_MODEL, RAY_SERVICE
from testkit.controlplane import ControlPlane
from tests.controlplane.conftest import eventually
from tests.support.languagemodel_cases import base_object
from tests.support.languagemodel_strategies import valid_specs

pytestmark = pytest.mark.slow

GENERATED = 6
# KubeRay's CRD types its status, so the nonsense is in the values: negative counts, empty and unknown
# names, states Serve never reports, apps nobody deployed - and a failed Router in each.
GARBAGE_STATUSES: list[Any] = [
    {
        "numServeEndpoints": -3,
        "activeServiceStatus": {
            "rayClusterName": "",
            "applicationStatuses": {"lm": {"status": "DEPLOY_FAILED", "message": "\u0000" * 3}},
        },
    },
    {
        "activeServiceStatus": {
            "applicationStatuses": {"lm": {"status": "UNHEALTHY"}, "rev-nope": {"status": "??"}},
        },
        "pendingServiceStatus": {"rayClusterName": "gone"},
    },
]


def _create(admin: Kube, namespace: str, name: str, spec: dict[str, Any]) -> None:
    body = {**base_object(name), "spec": spec}
    body["metadata"]["namespace"] = namespace
    admin.create(LANGUAGE_MODEL.collection(namespace), body)


def _settled(admin: Kube, namespace: str, name: str) -> str | None:
    """The phase once the status is for the current generation (None before)."""
    lm = admin.get(LANGUAGE_MODEL.item(namespace, name)) or {}
    status = lm.get("status") or {}
    if status.get("observedGeneration") != lm.get("metadata", {}).get("generation"):
        return None
    phase = status.get("phase")
    return phase if isinstance(phase, str) else None


def _draw(count: int) -> list[dict[str, Any]]:
    """``count`` specs drawn by hypothesis once (no shrinking: the operator test around them is not pure)."""
    drawn: list[dict[str, Any]] = []

    @settings(max_examples=1, deadline=None, database=None, phases=[Phase.generate])
    @given(st.lists(valid_specs(), min_size=count, max_size=count))
    def collect(specs: list[dict[str, Any]]) -> None:
        drawn[:] = specs

    collect()
    return drawn


def test_generated_and_hand_picked_bad_input_never_stops_the_operator(
    controlplane: ControlPlane, admin: Kube, namespace: str, start_operator: Any
) -> None:
    specs = _draw(GENERATED)
    operator = start_operator((namespace,))
    names = []
    for i, spec in enumerate(specs):
        _create(admin, namespace, f"gen-{i}", spec)
        names.append(f"gen-{i}")
    tiny = {"model": {"source": "builtin://tiny"}, "runtime": {"gpus": 0}}
    huge = copy.deepcopy(tiny)
    huge["runtime"]["memory"] = "9Ei"  # admitted by the CRD pattern, past what any quantity may be
    _create(admin, namespace, "huge", huge)
    remote = copy.deepcopy(tiny)
    remote["model"]["trustRemoteCode"] = True  # forbidden by this operator's policy
    _create(admin, namespace, "remote", remote)
    for name in names:
        eventually(lambda n=name: _settled(admin, namespace, n), timeout_s=120, what=f"{name} status")  # type: ignore[misc]
    # KubeRay (or someone) writes nonsense into a RayService status: reported, never raised on.
    with_service = [n for n in names if admin.get(RAY_SERVICE.item(namespace, n)) is not None]
    for name, garbage in zip(with_service, GARBAGE_STATUSES, strict=False):
        admin.merge_patch(RAY_SERVICE.item(namespace, name) + "/status", {"status": garbage})
    for name in with_service[: len(GARBAGE_STATUSES)]:
        eventually(
            lambda n=name: _settled(admin, namespace, n) in ("Degraded", "Failed"),  # type: ignore[misc]
            what=f"{name} Degraded or Failed by the odd status",
        )
    assert eventually(lambda: _settled(admin, namespace, "huge") == "Failed", what="huge Failed")
    assert eventually(lambda: _settled(admin, namespace, "remote") == "Failed", what="remote Failed")
    huge_ready = next(
        c
        for c in (admin.get(LANGUAGE_MODEL.item(namespace, "huge")) or {})["status"]["conditions"]
        if c["type"] == "Ready"
    )
    assert huge_ready["reason"] == "InvalidResources"
    assert operator.alive
    _create(admin, namespace, "after", tiny)
    eventually(lambda: admin.get(RAY_SERVICE.item(namespace, "after")), what="a good model still deployed")
