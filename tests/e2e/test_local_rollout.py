"""Local mode end to end: the operator's planner pieces roll a real local Serve application forward and back
under steady concurrent load, with zero failed client requests."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from lmops_operator.local.reconciler import LocalReconciler, LocalStep
from lmops_runtime import local as runtime_local
from testkit.load import Load
from testkit.manifests import canary_manifest
from testkit.models import broken_generate_model

pytestmark = pytest.mark.slow

INTERVAL_S = 5
CLIENTS = 4


def manifest(source: Path, max_new_tokens: int = 8) -> dict[str, Any]:
    return canary_manifest(
        source, name="tiny", max_new_tokens=max_new_tokens, pause_s=4, interval_s=INTERVAL_S
    )


def test_canary_promoted_then_failing_canary_rolled_back_under_load(
    reconciler: LocalReconciler, tiny_generate_model_dir: Path, tmp_path: Path
) -> None:
    broken_model_dir = broken_generate_model(tiny_generate_model_dir, tmp_path / "broken")
    port = runtime_local.free_port()
    reconciler.apply(manifest(tiny_generate_model_dir), http_port=port)
    first = reconciler.run(timeout_s=300)
    assert first.status.phase == "Ready" and first.status.stable_revision == first.target
    port = reconciler.state().http_port
    load = Load(f"http://127.0.0.1:{port}", clients=CLIENTS, max_tokens=4)
    steps: list[tuple[float, dict[str, int], str | None]] = []

    def record(step: LocalStep) -> None:
        weights = dict(step.decision.weights)
        if not steps or steps[-1][1] != weights:
            steps.append((time.monotonic(), weights, step.status.phase))

    load.start()
    try:
        time.sleep(2)
        # 1. A healthy canary (a new revision: other generation defaults) walks 25% -> 60% -> 100%.
        reconciler.apply(manifest(tiny_generate_model_dir, max_new_tokens=12), http_port=port)
        promoted = reconciler.run(timeout_s=300, on_step=record)
        healthy_steps = list(steps)
        sent_after_promote = load.sent
        time.sleep(2)
        # 2. A canary that errors at forward is rolled back by the analysis.
        steps.clear()
        reconciler.apply(manifest(broken_model_dir, max_new_tokens=12), http_port=port)
        aborted = reconciler.run(timeout_s=300, on_step=record)
        time.sleep(2)
    finally:
        load.stop()
    served = load.by_revision()

    canary_weights = [w.get(promoted.target, 0) for _, w, _ in healthy_steps]
    assert promoted.status.stable_revision == promoted.target != first.target
    assert canary_weights[-3:] == [25, 60, 100], healthy_steps
    assert promoted.status.phase == "Ready"

    bad = aborted.target
    ro = aborted.status.rollout
    assert ro is not None and ro.state == "Aborted" and ro.abort_reason
    assert aborted.status.stable_revision == promoted.target
    assert aborted.decision.weights == {promoted.target: 100}
    assert aborted.status.phase == "Degraded"
    with_traffic = [t for t, w, _ in steps if w.get(bad, 0) > 0]
    back = [t for t, w, _ in steps if bad not in w]
    assert with_traffic and back
    rollback_s = back[-1] - with_traffic[0]
    assert rollback_s <= INTERVAL_S, steps  # within one analysis interval

    summary = {
        "requests_sent": load.sent,
        "requests_failed": len(load.failures),
        "sent_during_healthy_canary": sent_after_promote,
        "served_by_revision": dict(served),
        "healthy_canary_weights": canary_weights,
        "rollback_seconds_after_first_canary_traffic": round(rollback_s, 2),
        "abort_reason": ro.abort_reason,
        "last_analysis": aborted.status.last_analysis.model_dump(mode="json", exclude_none=True)
        if aborted.status.last_analysis
        else None,
    }
    print("\nLOCAL ROLLOUT E2E " + json.dumps(summary, indent=1))
    assert load.failures == [], load.failures[:5]
    assert served[promoted.target] > 0 and served[first.target] > 0
    assert load.sent > 100
