"""Canary rollout on the real API server: the traffic decisions land in the RayService's serveConfigV2 and the
LanguageModel status; KubeRay's side is faked by patching RayService/status, the Router's counters by a
FakeMetricsSource. The operator is stopped between two canary steps and a new one resumes the rollout."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from lmops_operator.k8s.client import Kube
from lmops_operator.k8s.resources import CONTROLLER_REVISION, LANGUAGE_MODEL, RAY_SERVICE
from lmops_operator.metrics_source import FakeMetricsSource
from lmops_operator.planning.metrics import MetricsSnapshot
from lmops_runtime.router.stats import LATENCY_BUCKETS_S
from testkit.controlplane import ControlPlane
from tests.controlplane.conftest import eventually
from tests.unit.planner_helpers import kuberay_status
from tests.unit.rollout_helpers import metrics

pytestmark = pytest.mark.slow
NAME = "canary"
TIMEOUT_S = 120.0


def _body(namespace: str, max_new_tokens: int) -> dict[str, Any]:
    return {
        "apiVersion": "lmops.io/v1alpha1",
        "kind": "LanguageModel",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "model": {"source": "builtin://tiny", "generation": {"maxNewTokens": max_new_tokens}},
            "runtime": {"gpus": 0, "cpu": "1", "memory": "2Gi"},
            "rollout": {
                "steps": [{"weight": 20, "pauseSeconds": 0}, {"weight": 60, "pauseSeconds": 0}],
                "analysis": {"intervalSeconds": 5, "minRequests": 10, "failureLimit": 1},
            },
        },
    }


class World:
    """The test's view of the cluster: applies specs, fakes KubeRay and the Router's counters."""

    def __init__(self, plane: ControlPlane, admin: Kube, namespace: str) -> None:
        self.plane, self.admin, self.namespace = plane, admin, namespace
        self.counts: dict[str, tuple[int, int]] = {}
        self.source: FakeMetricsSource | None = None

    def apply(self, max_new_tokens: int) -> None:
        self.plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(_body(self.namespace, max_new_tokens)))

    def status(self) -> dict[str, Any]:
        body = self.admin.get(LANGUAGE_MODEL.item(self.namespace, NAME)) or {}
        return body.get("status") or {}

    def serve_config(self) -> dict[str, Any]:
        rs = self.admin.get(RAY_SERVICE.item(self.namespace, NAME)) or {}
        raw = (rs.get("spec") or {}).get("serveConfigV2")
        return yaml.safe_load(raw) if raw else {}

    def router_weights(self) -> dict[str, int]:
        apps = self.serve_config().get("applications") or []
        router = next((a for a in apps if a["name"] == "lm"), None)
        return dict(router["deployments"][0]["user_config"]["weights"]) if router else {}

    def kuberay_running(self) -> None:
        apps = dict.fromkeys([a["name"] for a in self.serve_config()["applications"]], "RUNNING")
        self.admin.merge_patch(
            RAY_SERVICE.item(self.namespace, NAME) + "/status", {"status": kuberay_status(apps)}
        )

    def traffic(self, revision: str, requests: int, errors: int = 0) -> None:
        n, e = self.counts.get(revision, (0, 0))
        self.counts[revision] = (n + requests, e + errors)
        self.publish()

    def publish(self) -> None:
        if self.source is not None:
            self.source.set(
                MetricsSnapshot(
                    "epoch-1",
                    datetime.now(UTC),
                    LATENCY_BUCKETS_S,
                    {r: metrics(n, e) for r, (n, e) in self.counts.items()},
                )
            )

    def revision(self, number: int) -> str:
        items = self.admin.list(CONTROLLER_REVISION.collection(self.namespace), f"lmops.io/model={NAME}")
        obj = next(r for r in items if r["revision"] == number)
        return str(obj["metadata"]["labels"]["lmops.io/revision"])

    def wait(self, check: Any, what: str) -> None:
        """``eventually`` with the model's status, weights and events in the failure message."""
        try:
            eventually(check, TIMEOUT_S, what)
        except AssertionError as exc:
            body = self.admin.get(LANGUAGE_MODEL.item(self.namespace, NAME)) or {}
            raise AssertionError(
                f"{exc}\nspec: {json.dumps(body.get('spec'))}\nstatus: {json.dumps(body.get('status'))}\n"
                f"weights: {self.router_weights()}\nevents: {self.events()}"
            ) from None

    def events(self) -> list[str]:
        out = self.plane.kubectl("get", "events", "-n", self.namespace, "-o", "json").stdout
        return [f"{e.get('reason')}: {e.get('message')}" for e in json.loads(out)["items"]]


def _start(world: World, start_operator: Any) -> Any:
    operator = start_operator((world.namespace,))
    world.source = operator.run.metrics_source
    world.publish()
    return operator


def test_canary_steps_resume_after_restart_then_failing_canary_rolls_back(
    controlplane: ControlPlane, admin: Kube, namespace: str, start_operator: Any
) -> None:
    world = World(controlplane, admin, namespace)
    operator = _start(world, start_operator)
    world.apply(8)
    world.wait(lambda: world.serve_config(), "RayService")
    world.kuberay_running()
    world.wait(lambda: world.status().get("phase") == "Ready", "first revision Ready")
    r1 = world.status()["stableRevision"]
    assert world.router_weights() == {r1: 100}

    # A new revision: deployed at weight 0 beside the stable one until KubeRay reports it running.
    world.apply(16)
    world.wait(lambda: len(world.router_weights()) == 2, "canary deployed")
    r2 = world.revision(2)
    assert world.router_weights() == {r1: 100, r2: 0}
    assert world.status()["rollout"]["state"] == "WaitingForReady"
    world.kuberay_running()
    # The RayService is written before the status: wait for both.
    world.wait(lambda: world.router_weights() == {r1: 80, r2: 20}, "step 1 at 20%")
    world.wait(lambda: world.status().get("canaryWeight") == 20, "status at step 1")
    status = world.status()
    assert (
        status["canaryRevision"] == r2 and status["canaryWeight"] == 20 and status["phase"] == "Progressing"
    )

    # Healthy traffic, one analysis passes -> step 2; then the operator is stopped between steps.
    world.traffic(r2, 30)
    world.traffic(r1, 120)
    world.wait(lambda: world.router_weights() == {r1: 40, r2: 60}, "step 2 at 60%")
    world.wait(lambda: world.status().get("canaryWeight") == 60, "status at step 2")
    assert world.status()["lastAnalysis"]["verdict"] == "Pass"
    operator.stop()
    baseline = world.status()["rollout"]["baseline"]
    assert {c["revision"] for c in baseline["revisions"]} == {r1, r2}

    # A new operator resumes from the status (the window baseline included) and finishes the rollout.
    operator = _start(world, start_operator)
    world.traffic(r2, 40)
    world.wait(lambda: world.status().get("stableRevision") == r2, "promoted after restart")
    assert world.router_weights() == {r2: 100}
    world.kuberay_running()
    world.wait(lambda: world.status().get("phase") == "Ready", "Ready on the new revision")
    assert [a["name"] for a in world.serve_config()["applications"]] == ["lm", f"rev-{r2}"]

    # A canary whose calls fail is rolled back at its first analysis (failureLimit 1).
    world.apply(24)
    world.wait(lambda: len(world.router_weights()) == 2, "third revision deployed")
    r3 = world.revision(3)
    world.kuberay_running()
    world.wait(lambda: world.router_weights() == {r2: 80, r3: 20}, "bad canary at 20%")
    world.traffic(r3, 20, errors=10)
    world.wait(lambda: world.router_weights() == {r2: 100}, "rolled back")
    world.wait(lambda: (world.status().get("rollout") or {}).get("state") == "Aborted", "status aborted")
    status = world.status()
    assert status["rollout"]["state"] == "Aborted" and "error rate" in status["rollout"]["abortReason"]
    analysis = status["lastAnalysis"]
    assert analysis["verdict"] == "Fail" and analysis["errorRate"] == 0.5 and analysis["maxErrorRate"] == 0.05
    assert status["stableRevision"] == r2 and "canaryRevision" not in status
    world.kuberay_running()
    world.wait(lambda: world.status().get("phase") == "Degraded", "Degraded (rolled back)")
    events = world.events()
    assert any(e.startswith("CanaryStep") for e in events), events
    assert any(e.startswith("RolloutPromoted") for e in events), events
    assert any(e.startswith("RolloutAborted") for e in events), events

    # kubectl alone restarts the aborted rollout: the annotation is consumed and the canary comes back.
    controlplane.kubectl("annotate", "lm", NAME, "-n", namespace, "lmops.io/restart=now")
    # (KubeRay's fake status still lists rev-r3 as RUNNING, so it may go straight to its first step.)
    world.wait(lambda: r3 in world.router_weights(), "restarted rollout redeploys r3")
    eventually(
        lambda: (
            "lmops.io/restart"
            not in (
                (admin.get(LANGUAGE_MODEL.item(namespace, NAME)) or {})["metadata"].get("annotations") or {}
            )
        ),
        TIMEOUT_S,
        "restart annotation consumed",
    )
    operator.stop()


def test_cli_promote_history_and_undo(
    controlplane: ControlPlane, admin: Kube, namespace: str, start_operator: Any, capsys: Any
) -> None:
    """``lmops rollout`` against the real API server: promote skips the steps, history lists the
    ControllerRevisions, undo restores the previous revision's spec and the operator rolls it out."""
    from lmops_operator.cli import main

    world = World(controlplane, admin, namespace)
    _start(world, start_operator)
    base = ["-n", namespace, "--kubeconfig", str(controlplane.kubeconfig)]
    world.apply(8)
    world.wait(lambda: world.serve_config(), "RayService")
    world.kuberay_running()
    world.wait(lambda: world.status().get("phase") == "Ready", "first revision Ready")
    r1 = world.status()["stableRevision"]

    world.apply(16)
    world.wait(lambda: len(world.router_weights()) == 2, "canary deployed")
    r2 = world.revision(2)
    world.kuberay_running()
    world.wait(lambda: world.router_weights() == {r1: 80, r2: 20}, "step 1")
    world.wait(lambda: world.status().get("canaryWeight") == 20, "status at step 1")
    assert main(["rollout", "status", NAME, *base]) == 0
    assert f"canary:  {r2} at 20%" in capsys.readouterr().out
    assert main(["rollout", "promote", NAME, *base]) == 0
    world.wait(lambda: world.status().get("stableRevision") == r2, "promoted by the CLI")
    assert world.router_weights() == {r2: 100}
    world.kuberay_running()
    assert main(["rollout", "status", NAME, "-w", "--timeout", "60", *base]) == 0

    assert main(["rollout", "history", NAME, *base]) == 0
    history = capsys.readouterr().out
    assert r1 in history and r2 in history and "stable" in history

    # undo: back to revision 1's model (a rollout like any other: the canary is r1 again).
    assert main(["rollout", "undo", NAME, *base]) == 0
    world.wait(lambda: r1 in world.router_weights(), "undo deploys revision 1 again")
    body = admin.get(LANGUAGE_MODEL.item(namespace, NAME)) or {}
    assert body["spec"]["model"]["generation"]["maxNewTokens"] == 8
    assert main(["rollout", "abort", NAME, *base]) == 0
    world.wait(lambda: (world.status().get("rollout") or {}).get("state") == "Aborted", "aborted")
    assert world.router_weights() == {r2: 100}
    assert main(["rollout", "status", NAME, "-w", "--timeout", "30", *base]) == 1  # ends: aborted
    assert main(["rollout", "undo", NAME, "--to-revision", "9", *base]) == 1
