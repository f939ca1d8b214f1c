"""Queue-length autoscaling: the pure decision, the policy under Ray Serve's own wrapper (bounds, delays) with
Serve's real ``AutoscalingContext``, and the serve config the operator renders for it (validated by Serve).

Nothing here starts Ray: Serve's policy wrapper and config schema are plain Python.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from ray.serve._private.autoscaling_state import _resolve_policy_callable
from ray.serve._private.common import DeploymentID, ReplicaID
from ray.serve.autoscaling_policy import _apply_autoscaling_config
from ray.serve.config import AutoscalingConfig, AutoscalingContext
from ray.serve.schema import ServeDeploySchema

from lmops_operator.planning.plan import Observed, plan
from lmops_runtime import config as contract
from lmops_runtime.autoscaling import QUEUE_METRIC, desired_replicas
from tests.support.languagemodel_cases import merge
from tests.unit.planner_helpers import SETTINGS, T0, by_kind, example, model


@pytest.mark.parametrize(
    ("current", "queues", "handle", "ongoing", "expected"),
    [
        (1, [4.0], 0.0, 12.0, 4.0),  # 4 waiting on one replica, target 1: four replicas' worth
        (2, [3.0, 1.0], 0.0, 20.0, 4.0),  # mean 2 per replica, target 1: double
        (2, [0.0, 0.0], 6.0, 20.0, 6.0),  # every replica full: requests wait at the Router's handles
        (2, [1.0, 0.0], 0.0, 20.0, 2.0),  # waiting within the target: hold, whatever the ongoing count
        (3, [0.0, 0.0, 0.0], 0.0, 30.0, 3.0),  # busy, nothing waits, ongoing needs all three: hold
        (3, [0.0, 0.0, 0.0], 0.0, 5.0, 2.0),  # nothing waits, 5 ongoing fit two replicas at 4 each
        (3, [0.0, 0.0, 0.0], 0.0, 0.0, 0.0),  # idle: as few as Serve's bounds allow
        (0, [], 0.0, 0.0, 0.0),  # no replica: Serve's cold-start path decides, not this rule
    ],
)
def test_desired_replicas(
    current: int, queues: list[float], handle: float, ongoing: float, expected: float
) -> None:
    assert desired_replicas(current, queues, handle, ongoing, 1.0, 4.0) == pytest.approx(expected)


def test_a_busy_replica_without_a_queue_is_not_scaled_out_unlike_serves_default_rule() -> None:
    # 32 sequences in one vLLM batch, none waiting: Serve's rule at target 4 would want 8 replicas.
    assert desired_replicas(1, [0.0], 0.0, 32.0, 1.0, 4.0) == 1.0
    assert desired_replicas(1, [2.5], 0.0, 34.5, 1.0, 4.0) == pytest.approx(2.5)


def _context(config: AutoscalingConfig, queues: list[float], *, target: int, ongoing: float) -> Any:
    deployment = DeploymentID(name=contract.SERVER_DEPLOYMENT, app_name="rev-abc")
    replicas = [ReplicaID(unique_id=f"r{i}", deployment_id=deployment) for i in range(len(queues))]
    stale = ReplicaID(unique_id="gone", deployment_id=deployment)  # a stopped replica's last report
    return AutoscalingContext(
        deployment_id=deployment,
        deployment_name=deployment.name,
        app_name=deployment.app_name,
        current_num_replicas=len(replicas),
        target_num_replicas=target,
        running_replicas=replicas,
        total_num_requests=ongoing,
        total_queued_requests=0.0,
        aggregated_metrics={QUEUE_METRIC: {**dict(zip(replicas, queues, strict=True)), stale: 50.0}},
        raw_metrics=None,
        capacity_adjusted_min_replicas=config.min_replicas,
        capacity_adjusted_max_replicas=config.max_replicas,
        policy_state={},
        last_scale_up_time=None,
        last_scale_down_time=None,
        current_time=None,
        config=config,
    )


def _config(target_queue_length: float, **bounds_and_delays: Any) -> AutoscalingConfig:
    policy = {
        "policy_function": contract.QUEUE_POLICY_IMPORT_PATH,
        "policy_kwargs": {"target_queue_length": target_queue_length},
    }
    return AutoscalingConfig(policy=policy, **bounds_and_delays)


def _serve_policy(config: AutoscalingConfig) -> Any:
    """The policy exactly as Serve's controller resolves and wraps it (class instantiated with its kwargs)."""
    return _apply_autoscaling_config(_resolve_policy_callable(config.policy))


def test_the_policy_under_serves_wrapper_scales_up_on_a_queue_and_holds_without_one() -> None:
    config = _config(2, min_replicas=1, max_replicas=3, upscale_delay_s=0, downscale_delay_s=0)
    policy = _serve_policy(config)
    up, _ = policy(_context(config, [6.0], target=1, ongoing=10.0))
    assert up == 3  # 6 waiting at 2 per replica; the stale replica's report does not count
    held, _ = policy(_context(config, [0.0, 0.0], target=2, ongoing=16.0))
    assert held == 2
    down, _ = policy(_context(config, [0.0, 0.0], target=2, ongoing=1.0))
    assert down == 1


def test_the_upscale_delay_still_applies() -> None:
    config = _config(1, min_replicas=1, max_replicas=4, upscale_delay_s=3600)
    decision, _ = _serve_policy(config)(_context(config, [5.0], target=1, ongoing=9.0))
    assert decision == 1


def test_serve_config_renders_the_policy_only_for_metric_queue_length() -> None:
    def server_deployment(change: dict[str, Any]) -> dict[str, Any]:
        result = plan(model(merge(example("tiny"), change)), Observed(now=T0), SETTINGS)
        doc = yaml.safe_load(by_kind(result, "RayService")[0]["spec"]["serveConfigV2"])
        ServeDeploySchema.model_validate(doc)  # Serve accepts it, importing and pickling the policy
        deployment: dict[str, Any] = doc["applications"][1]["deployments"][0]
        return deployment

    default = server_deployment({})["autoscaling_config"]
    assert "policy" not in default
    queued = server_deployment(
        {"spec": {"autoscaling": {"metric": "queueLength", "targetQueueLength": 3, "maxReplicas": 2}}}
    )["autoscaling_config"]
    assert queued["policy"] == {
        "policy_function": contract.QUEUE_POLICY_IMPORT_PATH,
        "policy_kwargs": {"target_queue_length": 3.0},
    }
    assert {key: value for key, value in queued.items() if key != "policy"} == default | {"max_replicas": 2}
