"""Autoscaling end to end on a real local Ray, driven by the operator's own serve config (local mode).

Under a closed-loop load the ModelServer replicas rise to the spec's maximum and fall back to the minimum
after the load stops, with no failed client request; a revision at zero replicas serves its first request
(the Router waits, bounded, for the replica Serve starts). Figures are printed for the closing note.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmops_operator.local.reconciler import LocalReconciler
from lmops_runtime import local as runtime_local
from testkit.load import Load, ReplicaCurve, running_replicas

pytestmark = pytest.mark.slow


def manifest(
    source: Path, name: str, autoscaling: dict[str, Any], serving: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "lmops.io/v1alpha1",
        "kind": "LanguageModel",
        "metadata": {"name": name},
        "spec": {
            "model": {"source": f"file://{source}", "generation": {"maxNewTokens": 16}},
            "runtime": {"gpus": 0},
            "serving": {"maxOngoingRequests": 8, **(serving or {})},
            "autoscaling": autoscaling,
        },
    }


def wait_for(check: Any, timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if check():
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached within {timeout_s}s")


def test_replicas_follow_a_load_step_up_and_back_down_without_failures(
    reconciler: LocalReconciler, tiny_generate_model_dir: Path
) -> None:
    scaling = {
        "minReplicas": 1,
        "maxReplicas": 3,
        "targetOngoingRequests": 1,
        "upscaleDelaySeconds": 0,
        "downscaleDelaySeconds": 2,
    }
    reconciler.apply(manifest(tiny_generate_model_dir, "tiny", scaling), http_port=runtime_local.free_port())
    ready = reconciler.run(timeout_s=300)
    assert ready.status.phase == "Ready"
    revision = ready.target
    url = f"http://127.0.0.1:{reconciler.state().http_port}"
    assert running_replicas(revision) == 1 == ready.status.ready_replicas
    curve = ReplicaCurve(revision).start()
    load = Load(url, clients=6, max_tokens=16)
    started = time.monotonic()
    load.start()
    try:
        up_s = wait_for(lambda: curve.latest() == 3, 180, "3 replicas under load")
        # The status follows autoscaling (readyReplicas), while replicas[] keeps the floor.
        scaled = reconciler.reconcile().status
        assert scaled.ready_replicas == 3, scaled
        assert [(r.ready, r.desired) for r in scaled.replicas or []] == [(1, 1)]
        time.sleep(3)  # keep the load on at the maximum for a moment
    finally:
        load.stop()
    stopped = time.monotonic()
    down_s = wait_for(lambda: curve.latest() == 1, 240, "back to 1 replica after the load")
    curve.stop()
    peak = max(n for _, n in curve.samples)
    summary = {
        "requests_sent": load.sent,
        "requests_failed": len(load.failures),
        "seconds_to_max_replicas": round(up_s, 1),
        "seconds_back_to_min_after_load": round(down_s, 1),
        "load_seconds": round(stopped - started, 1),
        "peak_replicas": peak,
        "curve": [(round(t - started, 1), n) for t, n in curve.samples][:: max(1, len(curve.samples) // 40)],
    }
    print("\nAUTOSCALING E2E " + json.dumps(summary))
    assert load.failures == [], load.failures[:5]
    assert peak == 3 and curve.latest() == 1
    assert load.sent > 20


def test_scale_from_zero_serves_the_first_request(
    reconciler: LocalReconciler, tiny_generate_model_dir: Path
) -> None:
    scaling = {
        "minReplicas": 0,
        "maxReplicas": 1,
        "targetOngoingRequests": 1,
        "upscaleDelaySeconds": 0,
        "downscaleDelaySeconds": 2,
        "scaleFromZeroTimeoutSeconds": 120,
    }
    reconciler.apply(manifest(tiny_generate_model_dir, "zero", scaling), http_port=runtime_local.free_port())
    ready = reconciler.run(timeout_s=300)
    revision = ready.target
    url = f"http://127.0.0.1:{reconciler.state().http_port}"
    wait_for(lambda: running_replicas(revision) == 0, 120, "zero replicas while idle")
    body = {"model": "zero", "prompt": "hello", "max_tokens": 4}
    started = time.monotonic()
    response = httpx.post(f"{url}/v1/completions", json=body, timeout=180)
    first_s = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert running_replicas(revision) == 1
    back_s = wait_for(lambda: running_replicas(revision) == 0, 120, "back to zero replicas")
    figures = {"first_request_seconds": round(first_s, 2), "seconds_back_to_zero": round(back_s, 1)}
    print("\nSCALE FROM ZERO E2E " + json.dumps(figures))


def test_queue_length_metric_scales_out_on_the_engine_queue_that_the_ongoing_rule_ignores(
    reconciler: LocalReconciler, tiny_generate_model_dir: Path
) -> None:
    """Batch size 1 and 4 clients: 3 requests wait in the continuous batcher's queue. Serve's own rule at
    targetOngoingRequests 8 would keep one replica (4 ongoing < 8); the queue-length policy adds one."""
    scaling = {
        "minReplicas": 1,
        "maxReplicas": 2,
        "targetOngoingRequests": 8,
        "metric": "queueLength",
        "targetQueueLength": 1,
        "upscaleDelaySeconds": 0,
        "downscaleDelaySeconds": 2,
    }
    body = manifest(tiny_generate_model_dir, "queued", scaling, serving={"maxBatchSize": 1})
    reconciler.apply(body, http_port=runtime_local.free_port())
    ready = reconciler.run(timeout_s=300)
    assert ready.status.phase == "Ready"
    revision = ready.target
    url = f"http://127.0.0.1:{reconciler.state().http_port}"
    curve = ReplicaCurve(revision).start()
    load = Load(url, clients=4, max_tokens=16, model="queued")
    load.start()
    try:
        up_s = wait_for(lambda: curve.latest() == 2, 180, "2 replicas on a queue")
    finally:
        load.stop()
    down_s = wait_for(lambda: curve.latest() == 1, 180, "back to 1 replica once nothing waits")
    curve.stop()
    figures = {"seconds_to_2_replicas": round(up_s, 1), "seconds_back_to_1": round(down_s, 1)}
    print("\nQUEUE-LENGTH AUTOSCALING E2E " + json.dumps(figures | {"sent": load.sent}))
    assert load.failures == [], load.failures[:5]
