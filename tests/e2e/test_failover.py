"""Failover proofs on a real local Ray under load: clients never retry, so every failure they see counts.

1. A ModelServer replica actor is killed mid-load: calls on it fail inside the Router and are retried once
   (on the same revision's live replica), so no client request fails.
2. A bad release is promoted (rollout Immediate) while the previous revision is kept warm
   (keepPreviousWarm): its failed calls are retried on the warm revision and the Router's breaker moves
   all traffic there; zero client requests fail. Requests sent, failed and the time to shift are printed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from lmops_operator.local.reconciler import LocalReconciler
from lmops_runtime import local as runtime_local
from lmops_runtime.config import RouterConfig
from testkit.load import Load, running_replicas
from testkit.models import broken_generate_model
from tests.runtime import serve_configs as sc
from tests.runtime.router_support import deployed, replica_actors

pytestmark = pytest.mark.slow


def test_killing_a_replica_under_load_fails_no_client_request(
    ray_local: None, tiny_generate_model_dir: Path
) -> None:
    config = RouterConfig(weights={"g1": 100}, stable="g1")
    document = sc.document(
        sc.router_app(config), sc.server_app("g1", tiny_generate_model_dir, num_replicas=2)
    )
    with deployed(document) as base:
        load = Load(base, clients=4, max_tokens=16).start()
        try:
            time.sleep(3)
            before = replica_actors("rev-g1", "ModelServer")
            victim = sorted(before)[0]
            killed_at = time.monotonic()
            ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
            deadline = time.monotonic() + 180
            replaced_s = None
            while time.monotonic() < deadline:
                live = replica_actors("rev-g1", "ModelServer")
                if victim not in live and live - before and running_replicas("g1") == 2:
                    replaced_s = time.monotonic() - killed_at
                    break
                time.sleep(0.5)
            assert replaced_s is not None, "Serve did not replace the killed replica"
            time.sleep(3)
        finally:
            load.stop()
        stats = httpx.get(f"{base}/stats", timeout=30).json()
        assert running_replicas("g1") == 2
    attempts = stats["revisions"]["g1"]
    figures = {
        "requests_sent": load.sent,
        "requests_failed": len(load.failures),
        "router_attempt_errors_retried": attempts["errors"],
        "seconds_until_serve_replaced_the_replica": round(replaced_s, 1),
    }
    print("\nREPLICA KILL E2E " + json.dumps(figures))
    assert load.failures == [], load.failures[:5]
    assert load.sent > 20


def manifest(source: Path) -> dict[str, Any]:
    return {
        "apiVersion": "lmops.io/v1alpha1",
        "kind": "LanguageModel",
        "metadata": {"name": "tiny"},
        "spec": {
            "model": {"source": f"file://{source}", "generation": {"maxNewTokens": 8}},
            "runtime": {"gpus": 0},
            "autoscaling": {"minReplicas": 1, "maxReplicas": 1},
            "rollout": {"strategy": "Immediate"},
            "failover": {"keepPreviousWarm": True},
        },
    }


def test_unhealthy_stable_moves_traffic_to_the_warm_previous_revision(
    reconciler: LocalReconciler, tiny_generate_model_dir: Path, tmp_path: Path
) -> None:
    broken = broken_generate_model(tiny_generate_model_dir, tmp_path / "broken")
    reconciler.apply(manifest(tiny_generate_model_dir), http_port=runtime_local.free_port())
    good = reconciler.run(timeout_s=300).target
    base = f"http://127.0.0.1:{reconciler.state().http_port}"
    load = Load(base, clients=4, max_tokens=8).start()
    try:
        time.sleep(2)
        reconciler.apply(manifest(broken), http_port=reconciler.state().http_port)
        promoted = reconciler.run(timeout_s=300)
        promoted_at = time.monotonic()
        bad = promoted.target
        assert promoted.status.stable_revision == bad and promoted.status.fallback_revision == good
        assert promoted.decision.weights == {bad: 100, good: 0}
        shifted_at = None
        deadline = promoted_at + 60
        while time.monotonic() < deadline:
            body = httpx.get(f"{base}/stats", timeout=30).json()
            if body["revisions"].get(bad, {}).get("healthy") is False:
                shifted_at = time.monotonic()
                break
            time.sleep(0.2)
        assert shifted_at is not None, "the Router never marked the bad stable revision unhealthy"
        after_shift = time.monotonic()
        time.sleep(6)
    finally:
        load.stop()
    late = load.by_revision(since=after_shift + 1)
    figures = {
        "requests_sent": load.sent,
        "requests_failed": len(load.failures),
        "served_by_revision": dict(load.by_revision()),
        "served_after_shift": dict(late),
        "seconds_promotion_to_shift": round(shifted_at - promoted_at, 2),
    }
    print("\nWARM FALLBACK E2E " + json.dumps(figures))
    assert load.failures == [], load.failures[:5]
    assert late and set(late) == {good}


def test_a_revision_that_fails_to_load_is_marked_failed_while_stable_keeps_serving(
    reconciler: LocalReconciler, tiny_generate_model_dir: Path, tmp_path: Path
) -> None:
    good_manifest = manifest(tiny_generate_model_dir)
    good_manifest["spec"]["rollout"] = {"strategy": "Canary", "steps": [{"weight": 50, "pauseSeconds": 1}]}
    reconciler.apply(good_manifest, http_port=runtime_local.free_port())
    good = reconciler.run(timeout_s=300).target
    base = f"http://127.0.0.1:{reconciler.state().http_port}"
    missing = tmp_path / "no-such-model"
    missing.mkdir()
    bad_manifest = {
        **good_manifest,
        "spec": {**good_manifest["spec"], "model": {"source": f"file://{missing}"}},
    }
    load = Load(base, clients=2, max_tokens=4).start()
    try:
        reconciler.apply(bad_manifest, http_port=reconciler.state().http_port)
        aborted = reconciler.run(timeout_s=300)
        time.sleep(2)
    finally:
        load.stop()
    rollout = aborted.status.rollout
    figures = {
        "requests_sent": load.sent,
        "requests_failed": len(load.failures),
        "served_by_revision": dict(load.by_revision()),
        "abort_reason": rollout.abort_reason if rollout else None,
    }
    print("\nLOAD FAILURE E2E " + json.dumps(figures))
    assert rollout is not None and rollout.state == "Aborted" and rollout.revision == aborted.target
    assert "failed" in (rollout.abort_reason or "")
    assert aborted.status.stable_revision == good and aborted.decision.weights == {good: 100}
    assert aborted.status.phase == "Degraded"
    assert load.failures == [], load.failures[:5]
    assert set(load.by_revision()) == {good} and load.sent > 10
