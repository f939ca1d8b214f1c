"""A new revision of the tiny model rolled out as a canary on the real node, under continuous load from the
host: KubeRay updates the Serve applications in place (the RayCluster stays the same), the canary's weight
walks the steps, and no client request fails, though the operator's pod is deleted in the middle of the
rollout (its Deployment starts a new one, which resumes from the LanguageModel's status). Runs after the other
cluster tests (it changes `tiny`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from testkit.load import Load
from tests.support.node import Node, Report

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(3600)]

OPERATOR_PODS = "app.kubernetes.io/instance=lmops,app.kubernetes.io/component=operator"
ANALYSIS: dict[str, float] = {
    "intervalSeconds": 10,
    "minRequests": 5,
    "failureLimit": 1,
    "maxErrorRate": 0.05,
}
ROLLOUT: dict[str, object] = {
    "steps": [{"weight": 25, "pauseSeconds": 15}, {"weight": 60, "pauseSeconds": 15}],
    "analysis": ANALYSIS,
}
#: What a failed request leaves in the Serve logs: the Router's 5xx answers and the proxy's errors.
FAILURE_LOG = "replica_wait_timeout|server_error| 50[0-9] |Traceback|Error"


def _wait_rollout(node: Node, what: str, done: Callable[[], bool], weights: list[tuple[float, int]]) -> None:
    """Poll a rollout each second (the weights it walks are recorded as they change) for up to 20 minutes;
    on a timeout, name the weights seen and the cluster's state."""
    node.wait_for(
        what, done, timeout=1200, interval=1, detail=lambda: f"weights {weights}:\n{node.diagnostics()}"
    )


def test_canary_walks_its_weights_in_place_under_load(
    lmops: Node, tiny: dict[str, float], report: Report
) -> None:
    node = lmops
    status = node.get("languagemodel", "tiny")["status"]
    stable = status["stableRevision"]
    clusters = {c["metadata"]["name"] for c in node.get("rayclusters")["items"]}
    load = Load(node.service_url("tiny"), clients=2, max_tokens=4).start()
    weights: list[tuple[float, int]] = []
    started = time.monotonic()
    try:
        time.sleep(5)
        patch = {"spec": {"model": {"generation": {"maxNewTokens": 12}}, "rollout": ROLLOUT}}
        node.kubectl("patch", "languagemodel", "tiny", "--type=merge", "-p", json.dumps(patch))

        operator_deleted: list[float] = []

        def promoted() -> bool:
            now = node.get("languagemodel", "tiny")["status"]
            weight = now.get("canaryWeight")
            if weight is not None and (not weights or weights[-1][1] != weight):
                weights.append((time.monotonic() - started, weight))
            if weight and not operator_deleted:
                node.kubectl("delete", "pod", "-n", "lmops-system", "-l", OPERATOR_PODS, "--wait=false")
                operator_deleted.append(time.monotonic() - started)
            return bool(now.get("stableRevision") not in (None, stable) and not now.get("canaryRevision"))

        _wait_rollout(node, "the canary to be promoted", promoted, weights)
        promoted_s = time.monotonic() - started
        time.sleep(5)
    finally:
        load.stop()
    served = load.by_revision()
    report(
        f"canary on the node: promoted after {promoted_s:.0f}s, weights (s, %) {weights}, "
        f"operator pod deleted at {operator_deleted}, "
        f"{load.sent} requests, {len(load.failures)} failed, served by {dict(served)}",
        canary_promoted_s=promoted_s,
        canary_requests=load.sent,
        canary_failed=len(load.failures),
    )
    assert load.failures == [], load.failures[:5]
    assert [w for _, w in weights if w][:2] == [25, 60], weights
    after = node.get("languagemodel", "tiny")["status"]["stableRevision"]
    assert len(served) >= 2 and after in served, served
    assert {c["metadata"]["name"] for c in node.get("rayclusters")["items"]} == clusters
    operator_pods = node.get("pods", "-n", "lmops-system", "-l", OPERATOR_PODS)["items"]
    assert operator_deleted and [p["status"]["phase"] for p in operator_pods] == ["Running"]


def test_canary_failing_its_analysis_is_rolled_back_under_load(
    lmops: Node, tiny: dict[str, float], report: Report
) -> None:
    """A canary whose latency cannot meet its analysis (p95 under 1 ms) is aborted: all traffic returns to
    the stable revision, without a failed request, though the aborted canary's application is deleted while
    the Router still has calls on their way to it."""
    node = lmops
    stable = node.get("languagemodel", "tiny")["status"]["stableRevision"]
    # The promoted rollout before this one left the old stable revision's worker idle until the autoscaler
    # removes it: start from one worker, so the one the canary needs is seen being added.
    node.wait_for(
        "the previous revision's idle worker to be removed",
        lambda: len(node.workers("tiny")) == 1,
        timeout=300,
        detail=node.diagnostics,
    )
    load = Load(node.service_url("tiny"), clients=2, max_tokens=4).start()
    weights: list[tuple[float, int]] = []
    workers = [len(node.workers("tiny"))]
    started = time.monotonic()
    try:
        time.sleep(5)
        rollout = {**ROLLOUT, "analysis": {**ANALYSIS, "maxP95LatencyMilliseconds": 1}}
        patch = {"spec": {"model": {"generation": {"maxNewTokens": 16}}, "rollout": rollout}}
        node.kubectl("patch", "languagemodel", "tiny", "--type=merge", "-p", json.dumps(patch))

        def aborted() -> bool:
            workers.append(len(node.workers("tiny")))
            now = node.get("languagemodel", "tiny")["status"]
            weight = now.get("canaryWeight")
            if weight is not None and (not weights or weights[-1][1] != weight):
                weights.append((time.monotonic() - started, weight))
            return (now.get("rollout") or {}).get("state") == "Aborted" and not weight

        _wait_rollout(node, "the canary to be rolled back", aborted, weights)
        back_at = time.monotonic() - started
        time.sleep(10)
    finally:
        load.stop()
    status = node.get("languagemodel", "tiny")["status"]
    with_traffic = [t for t, w in weights if w > 0]
    failures = [(round(at - started, 1), what) for at, what in load.failures]
    after_traffic = back_at - with_traffic[0] if with_traffic else float("nan")
    report(
        f"broken canary on the node: weights (s, %) {weights}, rolled back at {back_at:.0f}s, "
        f"{after_traffic:.0f}s after it first had traffic, "
        f"reason {status['rollout'].get('abortReason')!r}; {load.sent} requests, {len(failures)} failed "
        f"{failures[:5]}, served by {dict(load.by_revision())}",
        rollback_s=back_at,
        rollback_after_first_traffic_s=after_traffic,
        rollback_requests=load.sent,
        rollback_failed=len(failures),
    )
    assert failures == [], f"{failures[:5]}\n{node.serve_log_lines('tiny', FAILURE_LOG)}"
    assert with_traffic, weights
    assert status["stableRevision"] == stable
    assert status["rollout"]["abortReason"]

    # Ray's autoscaler: the canary's replica (one per worker pod) made it add a worker pod to the group
    # (whose minimum is 1); with the canary gone that worker is idle and is removed after the idle timeout.
    assert workers[0] == 1 and max(workers) >= 2, workers
    node.wait_for(
        "the idle worker to be removed",
        lambda: len(node.workers("tiny")) == 1,
        timeout=300,
        detail=lambda: f"pods left: {node.unready_pods('tiny')}:\n{node.diagnostics()}",
    )
    removed_s = time.monotonic() - started - back_at
    node.wait_pods_ready("tiny", timeout=120)
    report(
        f"autoscaler: worker pods {workers[0]} -> {max(workers)} for the canary, back to 1 "
        f"{removed_s:.0f}s after the rollback",
        rollback_worker_removed_s=removed_s,
    )
