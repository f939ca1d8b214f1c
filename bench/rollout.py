"""Rollout cost: GPUs a canary holds (from the planner's output) vs KubeRay's new-cluster upgrade, and the
time and client failures of rolling back a failing canary on a real local Ray.

Part 1 is pure: the operator's planner (``planning.plan.plan``) is driven through a whole canary rollout the
way the operator drives it (status fed back, KubeRay's status saying every application is RUNNING, Router
counters that pass every analysis, time advancing by reconcile intervals). Each reconcile's RayService holds
the serve config: which revisions are deployed, their traffic weights, autoscaling bounds and GPUs per
replica. The replicas each revision holds follow Ray Serve's autoscaling rule on its share of the load (a
load that needs R replicas in all), with the configured upscale and downscale delays; GPUs held = replicas x
GPUs per replica, summed over revisions, peak over the rollout. KubeRay's NewCluster upgrade runs a second,
full-size cluster beside the first: 2 x R x G.

Part 2 is real: the rollout engineer's local reconciler (the operator's planner pieces on a local Ray) rolls
out a canary whose every request fails at forward while clients send completions without pause; measured:
seconds from the first request routed to the failing canary until traffic is back on the stable revision
only, seconds from applying the new spec until then, and client requests that failed (the Router retries a
failed call on the stable revision, so this should be 0).
"""

from __future__ import annotations

import argparse
import bisect
import copy
import math
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from bench.common import (
    Result,
    log,
    machine_info,
    outputs,
    start_ray,
)
from bench.rollout_report import plot, render
from testkit.manifests import canary_manifest
from testkit.models import broken_generate_model

if TYPE_CHECKING:
    from testkit.load import Load

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RECONCILE_S = 5.0


# --- part 1: GPUs held during a canary, from the planner's output -------------------------------------------


def kuberay_new_cluster_gpus(replicas: int, gpus: int) -> int:
    """KubeRay's NewCluster upgrade: the new cluster comes up at full size beside the old one."""
    return 2 * replicas * gpus


def demanded_replicas(weight: int, load_replicas: int, min_replicas: int, max_replicas: int) -> int:
    """Serve's autoscaling target for a revision with ``weight`` % of a load needing ``load_replicas``."""
    wanted = math.ceil(weight * load_replicas / 100)
    return max(min_replicas, min(max_replicas, wanted))


@dataclass
class AppView:
    """One revision's application as the serve config describes it."""

    weight: int
    min_replicas: int
    max_replicas: int
    gpus_per_replica: int
    upscale_delay_s: float
    downscale_delay_s: float


def serve_config_view(ray_service: Mapping[str, Any]) -> dict[str, AppView]:
    """Revisions, weights, autoscaling bounds and GPUs per replica, read back from a RayService's YAML."""
    document = yaml.safe_load(ray_service["spec"]["serveConfigV2"])
    weights: dict[str, int] = {}
    apps: dict[str, dict[str, Any]] = {}
    for app in document["applications"]:
        deployment = app["deployments"][0]
        if app["name"] == "lm":
            weights = {str(k): int(v) for k, v in deployment["user_config"]["weights"].items()}
        else:
            apps[app["name"].removeprefix("rev-")] = deployment
    out = {}
    for revision, deployment in apps.items():
        scaling = deployment.get("autoscaling_config") or {}
        fixed = deployment.get("num_replicas")
        out[revision] = AppView(
            weight=weights.get(revision, 0),
            min_replicas=int(scaling.get("min_replicas", fixed or 1)),
            max_replicas=int(scaling.get("max_replicas", fixed or 1)),
            gpus_per_replica=int((deployment.get("ray_actor_options") or {}).get("num_gpus", 0)),
            upscale_delay_s=float(scaling.get("upscale_delay_s", 30.0)),
            downscale_delay_s=float(scaling.get("downscale_delay_s", 600.0)),
        )
    return out


@dataclass
class ReplicaModel:
    """Replicas per revision over time under Serve's rule: move to the demand once it has persisted for the
    upscale (or downscale) delay; a new application starts at its minimum; a removed one is gone at once."""

    load_replicas: int
    replicas: dict[str, int] = field(default_factory=dict)
    pending_since: dict[str, tuple[int, float]] = field(default_factory=dict)

    def advance(self, apps: Mapping[str, AppView], now_s: float) -> int:
        """Apply one reconcile's serve config at ``now_s``; returns the GPUs held afterwards."""
        for revision in [r for r in self.replicas if r not in apps]:
            del self.replicas[revision]
            self.pending_since.pop(revision, None)
        for revision, app in apps.items():
            current = self.replicas.setdefault(revision, app.min_replicas)
            demand = demanded_replicas(app.weight, self.load_replicas, app.min_replicas, app.max_replicas)
            current = max(app.min_replicas, min(app.max_replicas, current))
            if demand == current:
                self.pending_since.pop(revision, None)
            else:
                target, since = self.pending_since.get(revision, (demand, now_s))
                if target != demand:
                    since = now_s
                self.pending_since[revision] = (demand, since)
                delay = app.upscale_delay_s if demand > current else app.downscale_delay_s
                if now_s - since >= delay:
                    current = demand
                    self.pending_since.pop(revision, None)
            self.replicas[revision] = current
        return sum(self.replicas[r] * apps[r].gpus_per_replica for r in apps)


def _snapshot(at: datetime, counts: Mapping[str, int]) -> Any:
    """Router counters where every request succeeded in 50 ms (passes any analysis)."""
    from lmops_operator.planning.metrics import MetricsSnapshot, RevisionMetrics
    from lmops_runtime.router.stats import LATENCY_BUCKETS_S

    slot = bisect.bisect_left(LATENCY_BUCKETS_S, 0.05)
    revisions = {
        rev: RevisionMetrics(
            n, 0, tuple(n if i >= slot else 0 for i in range(len(LATENCY_BUCKETS_S) + 1)), n * 0.05
        )
        for rev, n in counts.items()
    }
    return MetricsSnapshot("bench", at, tuple(LATENCY_BUCKETS_S), revisions)


def kuberay_running_status(ray_service: Mapping[str, Any]) -> dict[str, Any]:
    """KubeRay's status with every application of the serve config RUNNING."""
    document = yaml.safe_load(ray_service["spec"]["serveConfigV2"])
    apps = {app["name"]: {"status": "RUNNING", "message": ""} for app in document["applications"]}
    return {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "NonZeroServeEndpoints",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
        "numServeEndpoints": 1,
        "activeServiceStatus": {"rayClusterName": "bench-abcde", "applicationStatuses": apps},
    }


SCENARIOS: dict[str, dict[str, int]] = {
    # The API's defaults: replicas follow load, slow downscale (600 s) outlasts the whole rollout.
    "autoscaled": {"minReplicas": 1},
    # Replicas follow load and a revision gives back replicas 30 s after its traffic share drops.
    "fast-downscale": {"minReplicas": 1, "downscaleDelaySeconds": 30},
    # A fixed size: every revision's application holds R replicas, whatever its weight.
    "fixed": {},
}


def manifest(replicas: int, gpus: int, source: str, scenario: str) -> dict[str, Any]:
    """A LanguageModel with the API's default canary (its default steps and analysis)."""
    return {
        "apiVersion": "lmops.io/v1alpha1",
        "kind": "LanguageModel",
        "metadata": {"name": "bench", "namespace": "models", "uid": "0b7f7c2e-0000-4000-8000-00000000b001"},
        "spec": {
            "model": {"source": source},
            "runtime": {"gpus": gpus, "cpu": "8", "memory": "64Gi"},
            "autoscaling": {"minReplicas": replicas, "maxReplicas": replicas, **SCENARIOS[scenario]},
        },
    }


def walk_canary(replicas: int, gpus: int, scenario: str, rps: int = 20) -> dict[str, Any]:
    """Deploy revision A, then roll out revision B through the planner; returns GPUs held per reconcile."""
    from lmops_operator.api import load_language_model
    from lmops_operator.planning.plan import Observed, plan
    from lmops_operator.settings import Settings

    settings = Settings(default_runtime_image="ghcr.io/lmops/runtime:bench")
    body = manifest(replicas, gpus, "hf://org/model-a", scenario)
    status = None
    ray_service: dict[str, Any] | None = None
    revisions: dict[str, dict[str, Any]] = {}
    counts: Counter[str] = Counter()
    now = T0
    model = ReplicaModel(load_replicas=replicas)
    timeline: list[dict[str, Any]] = []
    generation = 1
    rollout_started: float | None = None
    baseline = 0
    done = 0.0
    for tick in range(2000):
        now += timedelta(seconds=RECONCILE_S)
        elapsed = (now - T0).total_seconds()
        lm = load_language_model(copy.deepcopy(body))
        lm.metadata.generation = generation
        lm.status = status
        if ray_service is not None:
            ray_service["status"] = kuberay_running_status(ray_service)
        result = plan(
            lm,
            Observed(
                now=now,
                ray_service=ray_service,
                controller_revisions=list(revisions.values()),
                metrics=_snapshot(now, counts),
            ),
            settings,
        )
        for obj in result.objects:
            if obj["kind"] == "RayService":
                ray_service = copy.deepcopy(obj)
            elif obj["kind"] == "ControllerRevision":
                stored = copy.deepcopy(obj)
                stored["metadata"]["creationTimestamp"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
                revisions.setdefault(obj["metadata"]["name"], stored)
        for name in result.stale_revisions:
            revisions.pop(name, None)
        status = result.status
        assert ray_service is not None
        apps = serve_config_view(ray_service)
        held = model.advance(apps, elapsed)
        for revision, weight in result.weights.items():
            counts[revision] += int(rps * RECONCILE_S * weight / 100)
        timeline.append(
            {
                "t": elapsed,
                "gpus": held,
                "weights": dict(result.weights),
                "replicas": dict(model.replicas),
            }
        )
        stable, canary = status.stable_revision, status.canary_revision
        if rollout_started is None and stable == result.target_revision and canary is None:
            # Revision A serves: start the rollout of B once A holds the replicas its full load needs.
            if model.replicas.get(stable, 0) >= replicas or tick > 200:
                body["spec"]["model"]["source"] = "hf://org/model-b"
                generation += 1
                rollout_started = elapsed
                baseline = held
        elif rollout_started is not None and canary is None and stable == result.target_revision:
            done = elapsed
            break
    else:
        raise RuntimeError("the canary rollout did not finish in 2000 reconciles")
    assert ray_service is not None and rollout_started is not None
    during = [p for p in timeline if rollout_started <= p["t"] <= done]
    workers = ray_service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    new = status.stable_revision if status is not None else None
    return {
        "replicas": replicas,
        "gpus_per_replica": gpus,
        "scenario": scenario,
        "autoscaling": body["spec"]["autoscaling"],
        "before_gpus": baseline,
        "peak_gpus": max(p["gpus"] for p in during),
        "kuberay_gpus": kuberay_new_cluster_gpus(replicas, gpus),
        "cluster_max_gpus": int(workers["maxReplicas"]) * gpus,
        "rollout_s": done - rollout_started,
        "canary_weights": sorted({p["weights"].get(new, 0) for p in during} - {0, 100}),
        "timeline": during,
    }


# --- part 2: rolling back a failing canary on a local Ray ---------------------------------------------------


def local_manifest(source: Path, max_new_tokens: int, interval_s: int) -> dict[str, Any]:
    return canary_manifest(
        source, name="bench", max_new_tokens=max_new_tokens, pause_s=30, interval_s=interval_s
    )


def rollback_trials(trials: int, clients: int, interval_s: int) -> dict[str, Any]:
    """Serve a stable revision, then roll out ``trials`` failing canaries one after another under load."""
    import ray

    from lmops_operator.local.reconciler import LocalReconciler
    from lmops_runtime import local as runtime_local
    from lmops_runtime.tiny import save_tiny_model
    from testkit.load import Load

    out: dict[str, Any] = {"trials": [], "clients": clients, "analysis_interval_s": interval_s}
    with tempfile.TemporaryDirectory(prefix="lmops-bench-rollout-") as tmp:
        root = Path(tmp)
        good = save_tiny_model(root / "good", "generate")
        broken = broken_generate_model(good, root / "broken")
        start_ray(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            reconciler = LocalReconciler(path=root / "state.json")
            reconciler.apply(local_manifest(good, 8, interval_s), http_port=runtime_local.free_port())
            first = reconciler.run(timeout_s=600)
            stable = first.target
            port = reconciler.state().http_port
            load = Load(f"http://127.0.0.1:{port}", clients=clients, max_tokens=4, model="bench").start()
            try:
                time.sleep(2)
                for trial in range(trials):
                    log(f"rollout: failing canary {trial + 1}/{trials}")
                    out["trials"].append(_one_rollback(reconciler, load, broken, 12 + trial, interval_s))
                    assert out["trials"][-1]["stable_after"] == stable
                    time.sleep(2)
            finally:
                load.stop()
            out["requests_sent"] = load.sent
            out["requests_failed"] = len(load.failures)
            out["failures"] = [what for _, what in load.failures[:10]]
            out["served_by_revision"] = dict(load.by_revision())
        finally:
            apps = [a for a in runtime_local.status() if a == "lm" or a.startswith("rev-")]
            if apps:
                runtime_local.delete_apps(apps)
            runtime_local.shutdown()
            ray.shutdown()
    return out


def _one_rollback(
    reconciler: Any, load: Load, broken: Path, max_new_tokens: int, interval_s: int
) -> dict[str, Any]:
    steps: list[tuple[float, dict[str, int]]] = []

    def record(step: Any) -> None:
        weights = dict(step.decision.weights)
        if not steps or steps[-1][1] != weights:
            steps.append((time.perf_counter(), weights))

    failed_before = len(load.failures)
    sent_before = load.sent
    port = reconciler.state().http_port
    applied = time.perf_counter()
    reconciler.apply(local_manifest(broken, max_new_tokens, interval_s), http_port=port)
    aborted = reconciler.run(timeout_s=600, on_step=record)
    bad = aborted.target
    rollout = aborted.status.rollout
    with_traffic = [t for t, w in steps if w.get(bad, 0) > 0]
    back = [t for t, w in steps if bad not in w or w.get(bad, 0) == 0]
    if rollout is None or rollout.state != "Aborted" or not with_traffic or not back:
        raise RuntimeError(f"the failing canary was not rolled back as expected: {steps}, {rollout}")
    return {
        "canary": bad,
        "stable_after": aborted.status.stable_revision,
        "first_traffic_to_rollback_s": back[-1] - with_traffic[0],
        "apply_to_rollback_s": back[-1] - applied,
        "canary_weights": sorted({w.get(bad, 0) for _, w in steps}),
        "abort_reason": rollout.abort_reason,
        "requests_sent": load.sent - sent_before,
        "requests_failed": len(load.failures) - failed_before,
    }


# --- the benchmark ------------------------------------------------------------------------------------------


def run(quick: bool = False, skip_local: bool = False) -> Result:
    info = machine_info()
    sizes = [2, 4] if quick else [2, 4, 8]
    gpus = 2
    data: dict[str, Any] = {"gpus_per_replica": gpus, "walks": []}
    for scenario in SCENARIOS:
        for replicas in sizes:
            data["walks"].append(walk_canary(replicas, gpus, scenario))
    if not skip_local:
        data["rollback"] = rollback_trials(trials=2 if quick else 3, clients=4, interval_s=5)
    markdown, notes = render(data)
    return Result("rollout", "Rollout cost", info, data, markdown, [], notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-local", action="store_true", help="only the planner part (no Ray)")
    args = parser.parse_args(argv)
    result = run(quick=args.quick, skip_local=args.skip_local)
    out = outputs(args.quick)
    result.images = plot(result.data, out.images)
    result.save(out.results)
    print(result.report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
