"""The local reconciler with Serve and the Router faked: documents deployed, drain order, state file."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lmops_operator.local import state as store
from lmops_operator.local.reconciler import LocalReconciler, LocalRolloutError, localize
from lmops_operator.planning.metrics import MetricsSnapshot
from lmops_runtime.config import ROUTER_APP
from tests.unit.rollout_helpers import T0, metrics, snapshot


def manifest(source: str = "builtin://tiny", **rollout: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "m"},
        "spec": {
            "model": {"source": source},
            "runtime": {"gpus": 0},
            "rollout": {
                "steps": [{"weight": 50, "pauseSeconds": 10}],
                "analysis": {"intervalSeconds": 5, "minRequests": 1, "failureLimit": 1},
                **rollout,
            },
        },
    }


@dataclass
class FakeServe:
    """Applications become RUNNING one reconcile after they are deployed (unless listed in ``broken``)."""

    documents: list[dict[str, Any]] = field(default_factory=list)
    apps: dict[str, str] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    router_weights: dict[str, int] | None = None
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    clock: datetime = T0

    def deploy(self, document: dict[str, Any], http_port: int, host: str) -> int:
        self.documents.append(document)
        names = [a["name"] for a in document["applications"]]
        self.apps = {n: self.apps.get(n, "DEPLOYING") for n in names}
        router = next(a for a in document["applications"] if a["name"] == ROUTER_APP)
        self.router_weights = dict(router["deployments"][0]["user_config"]["weights"])
        return http_port + 1  # Serve may already listen elsewhere: the reconciler must keep what it says

    def serve_apps(self) -> dict[str, Any]:
        out: dict[str, Any] = {n: {"status": s, "message": ""} for n, s in self.apps.items()}
        for name, app in out.items():
            if name != ROUTER_APP:
                running = int(app["status"] == "RUNNING")
                app["deployments"] = {"ModelServer": {"replicas": {"RUNNING": running}}}
        self.apps = {n: ("DEPLOY_FAILED" if n in self.broken else "RUNNING") for n in self.apps}
        return out

    def read_stats(self, url: str) -> MetricsSnapshot | None:
        return snapshot(self.clock, **{r: metrics(n, e) for r, (n, e) in self.counts.items()})


@pytest.fixture
def serve() -> FakeServe:
    return FakeServe()


@pytest.fixture
def rec(serve: FakeServe, tmp_path: Path) -> LocalReconciler:
    return LocalReconciler(
        path=tmp_path / "state.json",
        deploy=serve.deploy,
        serve_apps=serve.serve_apps,
        read_stats=serve.read_stats,
        router_weights=lambda url: serve.router_weights,
        now=lambda: serve.clock,
    )


def test_first_deploy_then_canary_promotion_drains_before_delete(
    rec: LocalReconciler, serve: FakeServe
) -> None:
    rec.apply(manifest(), http_port=9000)
    first = rec.run(timeout_s=5, sleep=lambda s: None)
    assert first.status.phase == "Ready" and first.status.endpoint == "http://127.0.0.1:9001/v1"
    assert first.status.ready_replicas == 1
    assert rec.state().http_port == 9001
    a = first.target
    rec.apply(manifest("file:///new"), http_port=9000)

    def tick(seconds: float) -> None:
        serve.clock += timedelta(seconds=seconds)
        for rev in list(serve.counts) + [r for r in (serve.router_weights or {})]:
            n, e = serve.counts.get(rev, (0, 0))
            serve.counts[rev] = (n + 10, e)

    step = rec.run(timeout_s=5, sleep=tick)
    b = step.target
    assert step.status.stable_revision == b and step.decision.weights == {b: 100}
    names = [[app["name"] for app in d["applications"]] for d in serve.documents]
    # The last two deployments: Router at {b: 100} with rev-a still running, then rev-a removed.
    assert names[-2] == [ROUTER_APP, f"rev-{b}", f"rev-{a}"]
    assert names[-1] == [ROUTER_APP, f"rev-{b}"]
    assert serve.documents[-2]["applications"][0]["deployments"][0]["user_config"]["weights"] == {b: 100}
    saved = store.load(rec.path)
    assert saved is not None and saved.status["stableRevision"] == b
    assert [r["number"] for r in saved.status["revisions"]] == [1, 2]
    assert any(e[1] == "RolloutPromoted" for e in rec.events)


def test_broken_canary_is_aborted_and_state_survives_a_new_reconciler(
    rec: LocalReconciler, serve: FakeServe, tmp_path: Path
) -> None:
    rec.apply(manifest(), http_port=9000)
    rec.run(timeout_s=5, sleep=lambda s: None)
    rec.apply(manifest("file:///broken"), http_port=9000)
    step = rec.reconcile()
    serve.broken.add(f"rev-{step.target}")
    step = rec.run(timeout_s=5, sleep=lambda s: None)
    assert step.status.rollout is not None and step.status.rollout.state == "Aborted"
    assert step.status.phase == "Degraded"
    again = LocalReconciler(
        path=rec.path,
        deploy=serve.deploy,
        serve_apps=serve.serve_apps,
        read_stats=serve.read_stats,
        router_weights=lambda url: serve.router_weights,
        now=lambda: serve.clock,
    ).reconcile()
    assert again.status.rollout is not None and again.status.rollout.state == "Aborted" and again.settled


def test_first_deploy_failure_raises(rec: LocalReconciler, serve: FakeServe) -> None:
    rec.apply(manifest(), http_port=9000)
    step = rec.reconcile()
    serve.broken.add(f"rev-{step.target}")
    with pytest.raises(LocalRolloutError, match="failed"):
        rec.run(timeout_s=5, sleep=lambda s: None)


def test_one_model_per_local_ray(rec: LocalReconciler) -> None:
    rec.apply(manifest(), http_port=9000)
    other = manifest()
    other["metadata"]["name"] = "other"
    with pytest.raises(LocalRolloutError, match="lmops down"):
        rec.apply(other, http_port=9000)


def test_localize_drops_pod_sized_reservations() -> None:
    doc = {
        "applications": [
            {
                "name": "x",
                "deployments": [
                    {"name": "d", "ray_actor_options": {"num_cpus": 2, "memory": 123, "num_gpus": 2}}
                ],
            }
        ]
    }
    out = localize(doc, local_gpus=1)
    assert out["applications"][0]["deployments"][0]["ray_actor_options"] == {"num_cpus": 0, "num_gpus": 1}
    assert doc["applications"][0]["deployments"][0]["ray_actor_options"]["num_cpus"] == 2
