"""A new revision of the tiny model rolled out as a canary on the real node, under continuous load from the
host: KubeRay updates the Serve applications in place (the RayCluster stays the same), the canary's weight
walks the steps, and no client request fails, though the operator's pod is deleted in the middle of the
rollout (its Deployment starts a new one, which resumes from the LanguageModel's status). Runs after the other
cluster tests (it changes `tiny`)."""

from __future__ import annotations

import json
import sys
import time

import pytest

from testkit.load import Load
from tests.support.node import Node

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(3600)]

OPERATOR_PODS = "app.kubernetes.io/instance=lmops,app.kubernetes.io/component=operator"
ROLLOUT = {
    "steps": [{"weight": 25, "pauseSeconds": 15}, {"weight": 60, "pauseSeconds": 15}],
    "analysis": {"intervalSeconds": 10, "minRequests": 5, "failureLimit": 1, "maxErrorRate": 0.05},
}


def test_canary_walks_its_weights_in_place_under_load(lmops: Node, tiny: dict[str, float]) -> None:
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

        try:
            node.wait_for("the canary to be promoted", promoted, timeout=1200, interval=1)
        except TimeoutError:
            pytest.fail(f"canary not promoted; weights {weights}:\n{node.diagnostics()}")
        time.sleep(5)
    finally:
        load.stop()
    served = load.by_revision()
    sys.stderr.write(
        f"\ncanary on the node: promoted after {time.monotonic() - started:.0f}s, weights (s, %) {weights}, "
        f"operator pod deleted at {operator_deleted}, "
        f"{load.sent} requests, {len(load.failures)} failed, served by {dict(served)}\n"
    )
    assert load.failures == [], load.failures[:5]
    assert [w for _, w in weights if w][:2] == [25, 60], weights
    after = node.get("languagemodel", "tiny")["status"]["stableRevision"]
    assert len(served) >= 2 and after in served, served
    assert {c["metadata"]["name"] for c in node.get("rayclusters")["items"]} == clusters
    operator_pods = node.get("pods", "-n", "lmops-system", "-l", OPERATOR_PODS)["items"]
    assert operator_deleted and [p["status"]["phase"] for p in operator_pods] == ["Running"]
