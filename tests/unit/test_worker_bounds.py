"""Worker bounds for live RayClusters (planning.worker_bounds): KubeRay does not push them (kuberay#4568)."""

from __future__ import annotations

from typing import Any

from lmops_operator.builders.rayservice import revision_slots
from lmops_operator.planning.plan import Observed, plan
from lmops_operator.planning.worker_bounds import bounds_patch, cluster_names, desired_bounds
from tests.unit.planner_helpers import SETTINGS, T0, example, model


def _cluster(*groups: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"workerGroupSpecs": list(groups)}}


def test_bounds_come_from_the_replica_bounds_times_revision_slots() -> None:
    for name in ("failover", "scale-to-zero", "gpt2-canary"):
        lm = model(example(name))
        result = plan(lm, Observed(now=T0), SETTINGS)
        ray_service = next(o for o in result.objects if o["kind"] == "RayService")
        bounds = desired_bounds(ray_service)
        scaling = lm.spec.autoscaling
        assert bounds == {"gpu": (scaling.min_replicas, scaling.max_replicas * revision_slots(lm.spec))}


def test_patch_edits_only_differing_groups_guarded_by_a_name_test() -> None:
    live = _cluster(
        {"groupName": "cpu", "minReplicas": 1, "maxReplicas": 2, "replicas": 1},
        {"groupName": "gpu", "minReplicas": 1, "maxReplicas": 4, "replicas": 1},
    )
    ops = bounds_patch({"gpu": (2, 12), "cpu": (1, 2)}, live)
    assert ops == [
        {"op": "test", "path": "/spec/workerGroupSpecs/1/groupName", "value": "gpu"},
        {"op": "replace", "path": "/spec/workerGroupSpecs/1/minReplicas", "value": 2},
        {"op": "replace", "path": "/spec/workerGroupSpecs/1/maxReplicas", "value": 12},
        {"op": "replace", "path": "/spec/workerGroupSpecs/1/replicas", "value": 2},
    ]
    assert bounds_patch({"gpu": (1, 4)}, live) == []


def test_patch_adds_missing_fields_and_clamps_replicas_down() -> None:
    ops = bounds_patch({"gpu": (0, 2)}, _cluster({"groupName": "gpu", "replicas": 5}))
    assert {"op": "add", "path": "/spec/workerGroupSpecs/0/minReplicas", "value": 0} in ops
    assert {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 2} in ops


def test_cluster_names_active_and_pending_from_status() -> None:
    assert cluster_names(None) == [] and cluster_names({"status": "odd"}) == []
    status = {
        "activeServiceStatus": {"rayClusterName": "m-a"},
        "pendingServiceStatus": {"rayClusterName": "m-b"},
    }
    assert cluster_names({"status": status}) == ["m-a", "m-b"]
