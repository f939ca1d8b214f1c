"""Operator crash safety: the operator dies at a random write of create / update / rollout / delete, a fresh
one takes over, and every object converges with nothing orphaned.

A crash is simulated where it hurts: the operator's API client fails every request from the k-th write on
(k drawn at random per phase, seed printed), as if the process had died right before sending it; that
operator is then stopped and a new one started with a healthy client. State lives in the API server only
(children and status), so the new operator must finish the job from what it finds.
"""

from __future__ import annotations

import os
import random
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmops_operator.commands.operator import OperatorRun
from lmops_operator.k8s.client import Kube, api_client_from_kubeconfig
from lmops_operator.k8s.resources import CONTROLLER_REVISION, LANGUAGE_MODEL, PDB, RAY_SERVICE, SERVICE
from lmops_operator.metrics_source import FakeMetricsSource
from lmops_operator.settings import Settings
from testkit.controlplane import ControlPlane
from tests.controlplane.conftest import RunningOperator, eventually
from tests.unit.planner_helpers import REPO, kuberay_status

pytestmark = pytest.mark.slow

NAME = "crashy"


class Crash(ConnectionError):
    """The operator process is gone: nothing it still tries to send arrives."""


class CrashingApi:
    """Wraps ``call_api``: from the ``crash_at``-th write on, every request fails."""

    def __init__(self, api: Any, crash_at: int) -> None:
        self.crash_at = crash_at
        self.writes = 0
        self.crashed = threading.Event()
        inner = api.call_api

        def call_api(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            if self.crashed.is_set():
                raise Crash("operator crashed")
            if method.upper() not in ("GET", "HEAD"):
                self.writes += 1
                if self.writes >= self.crash_at:
                    self.crashed.set()
                    raise Crash(f"operator crashed before write #{self.writes}: {method} {url}")
            return inner(method, url, *args, **kwargs)

        api.call_api = call_api


def _operator(credentials: Path, namespace: str, api: Any) -> RunningOperator:
    run = OperatorRun(
        Settings(watch_namespaces=(namespace,), default_runtime_image="ghcr.io/lmops/runtime:test"),
        kubeconfig=str(credentials),
        metrics_source=FakeMetricsSource(),
        api_client=api,
    )
    return RunningOperator(run).start()


def _children(admin: Kube, namespace: str) -> dict[str, list[dict[str, Any]]]:
    selector = f"lmops.io/model={NAME}"
    return {
        kind: admin.list(resource.collection(namespace), selector)
        for kind, resource in (
            ("RayService", RAY_SERVICE),
            ("Service", SERVICE),
            ("PodDisruptionBudget", PDB),
            ("ControllerRevision", CONTROLLER_REVISION),
        )
    }


def _status(admin: Kube, namespace: str) -> dict[str, Any]:
    return dict(((admin.get(LANGUAGE_MODEL.item(namespace, NAME)) or {}).get("status")) or {})


def _fake_kuberay(admin: Kube, namespace: str) -> None:
    ray_service = admin.get(RAY_SERVICE.item(namespace, NAME))
    assert ray_service is not None
    apps = {
        a["name"]: "RUNNING" for a in yaml.safe_load(ray_service["spec"]["serveConfigV2"])["applications"]
    }
    admin.merge_patch(RAY_SERVICE.item(namespace, NAME) + "/status", {"status": kuberay_status(apps)})


def _converged(admin: Kube, namespace: str, uid: str, revisions: int) -> bool:
    """Every child exists once, is owned by the model, and the status is current and Ready."""
    children = _children(admin, namespace)
    counts = {k: len(v) for k, v in children.items()}
    if counts != {"RayService": 1, "Service": 1, "PodDisruptionBudget": 1, "ControllerRevision": revisions}:
        return False
    for items in children.values():
        for obj in items:
            refs = obj["metadata"].get("ownerReferences") or []
            if [r["uid"] for r in refs if r.get("controller")] != [uid]:
                return False
    lm = admin.get(LANGUAGE_MODEL.item(namespace, NAME)) or {}
    status = lm.get("status") or {}
    return bool(
        status.get("observedGeneration") == lm["metadata"]["generation"] and status.get("phase") == "Ready"
    )


def test_random_crashes_in_create_update_rollout_delete_converge(
    controlplane: ControlPlane, admin: Kube, namespace: str, operator_credentials: Path
) -> None:
    seed = int(os.environ.get("LMOPS_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    sys.stderr.write(f"\noperator crash seed {seed} (LMOPS_CRASH_SEED to replay)\n")
    body = yaml.safe_load((REPO / "examples" / "tiny.yaml").read_text())
    body["metadata"]["name"] = NAME
    body["metadata"]["namespace"] = namespace
    body["spec"]["rollout"] = {"strategy": "Immediate"}
    crashes: list[tuple[str, int, bool]] = []

    def crash_during(phase: str, most: int, act: Any) -> None:
        """Start a crashing operator, do ``act``, wait for the crash, then replace it with a healthy one."""
        crash_at = rng.randint(1, most)
        client = api_client_from_kubeconfig(str(operator_credentials))
        api = CrashingApi(client, crash_at)
        operator = _operator(operator_credentials, namespace, client)
        act()
        hit = api.crashed.wait(30)
        operator.stop()
        crashes.append((phase, crash_at, hit))

    def healthy() -> RunningOperator:
        return _operator(
            operator_credentials, namespace, api_client_from_kubeconfig(str(operator_credentials))
        )

    def patch(change: dict[str, Any]) -> None:
        controlplane.patch_model(namespace, NAME, change)

    # create: RevisionCreated, ControllerRevision, RayService, Service, PDB, status ... (>= 5 writes)
    crash_during("create", 5, lambda: controlplane.kubectl("apply", "-f", "-", input=yaml.safe_dump(body)))
    operator = healthy()
    eventually(lambda: admin.get(RAY_SERVICE.item(namespace, NAME)), what="RayService after the crash")
    _fake_kuberay(admin, namespace)
    uid = (admin.get(LANGUAGE_MODEL.item(namespace, NAME)) or {})["metadata"]["uid"]
    eventually(lambda: _converged(admin, namespace, uid, 1), what="create converged")
    operator.stop()

    # update (no new revision): RayService apply, status, event
    crash_during("update", 2, lambda: patch({"spec": {"autoscaling": {"maxReplicas": 3}}}))
    operator = healthy()
    eventually(
        lambda: (
            (admin.get(RAY_SERVICE.item(namespace, NAME)) or {})["spec"]["rayClusterConfig"][
                "workerGroupSpecs"
            ][0]["maxReplicas"]
            == 6
        ),
        what="update applied",
    )
    eventually(lambda: _converged(admin, namespace, uid, 1), what="update converged")
    operator.stop()

    # rollout (a new revision, Immediate): ControllerRevision, RayService, status, events ...
    crash_during("rollout", 4, lambda: patch({"spec": {"model": {"revision": "v2"}}}))
    operator = healthy()
    eventually(lambda: len(_children(admin, namespace)["ControllerRevision"]) == 2, what="second revision")

    def promoted() -> bool:
        _fake_kuberay(admin, namespace)
        status = _status(admin, namespace)
        traffic = status.get("traffic") or []
        return (
            len(traffic) == 1
            and traffic[0]["revision"] == status.get("stableRevision")
            and (
                status.get("stableRevision")
                == next(
                    r["metadata"]["labels"]["lmops.io/revision"]
                    for r in _children(admin, namespace)["ControllerRevision"]
                    if r["revision"] == 2
                )
            )
        )

    eventually(promoted, timeout_s=90, what="new revision stable with all traffic")
    _fake_kuberay(admin, namespace)
    eventually(lambda: _converged(admin, namespace, uid, 2), what="rollout converged")
    operator.stop()

    # delete: the operator dies while the model is deleted; nothing may be left behind or stuck
    crash_during(
        "delete",
        2,
        lambda: controlplane.kubectl("delete", "lm", NAME, "-n", namespace, "--wait=false"),
    )
    operator = healthy()
    eventually(lambda: admin.get(LANGUAGE_MODEL.item(namespace, NAME)) is None, what="model deleted")
    eventually(
        lambda: not any(_children(admin, namespace).values()),
        timeout_s=120,
        what="children garbage-collected",
    )
    operator.stop()
    sys.stderr.write(f"crash points (phase, write #, crashed): {crashes}\n")
    assert sum(hit for _, _, hit in crashes[:3]) >= 2, crashes
