"""The serveConfigV2 document: the Router application ``lm`` plus one ``rev-<revision>`` app per revision.

The same document goes to KubeRay (as YAML in ``RayService.spec.serveConfigV2``) and to local mode, which
deploys it on a local Ray. Per-revision settings that would restart replicas (args, actor resources) come
from the revision's stored data, so editing today's spec never disturbs an older revision still serving.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lmops_operator.api import AutoscalingSpec, LanguageModel
from lmops_operator.names import API_KEYS_MOUNT_PATH
from lmops_operator.planning.quantity import byte_count, cpu_count
from lmops_operator.planning.revision import server_args
from lmops_operator.planning.traffic import TrafficDecision
from lmops_runtime import config as contract

HEALTH_CHECK_PERIOD_S = 10.0
HEALTH_CHECK_TIMEOUT_S = 30.0
# Ray reserves about 30% of a node's memory for the object store; a replica asking for its pod's whole
# memory would never be scheduled, so it reserves this share of it.
ACTOR_MEMORY_SHARE = 0.6
ROUTER_MIN_ONGOING = 100


def api_keys_file(lm: LanguageModel) -> str | None:
    ref = lm.spec.serving.api_key_secret_ref
    return None if ref is None else f"{API_KEYS_MOUNT_PATH}/{ref.key}"


def actor_options(resources: Mapping[str, Any]) -> dict[str, Any]:
    """Ray actor resources of one replica, from a revision's stored per-replica pod resources."""
    return {
        "num_cpus": cpu_count(str(resources["cpu"])),
        "num_gpus": int(resources.get("gpus", 0)),
        "memory": int(byte_count(str(resources["memory"])) * ACTOR_MEMORY_SHARE),
    }


def tensor_parallel_placement(data: Mapping[str, Any]) -> dict[str, Any]:
    """Placement of a vLLM replica that shards its model over several GPUs, else nothing.

    The replica actor takes the first bundle with its CPUs and memory; vLLM's Ray executor starts one worker
    per GPU bundle. STRICT_PACK keeps all of them on one node: KubeRay's worker pod holds exactly
    runtime.gpus GPUs, one replica per pod, so the group fits one pod and never spans two.
    """
    model, resources = data["model"], data["resources"]
    gpus = int(resources.get("gpus", 0))
    if model.get("engine") != "vllm" or gpus < 2:
        return {}
    options = actor_options(resources)
    first = {"CPU": options["num_cpus"], "GPU": 1, "memory": options["memory"]}
    return {
        "ray_actor_options": {**options, "num_gpus": 0},
        "placement_group_bundles": [first] + [{"GPU": 1} for _ in range(gpus - 1)],
        "placement_group_strategy": "STRICT_PACK",
    }


def router_config(
    lm: LanguageModel, decision: TrafficDecision, target_revision: str
) -> contract.RouterConfig:
    serving = lm.spec.serving
    return contract.RouterConfig(
        weights=dict(sorted(decision.weights.items())),
        stable=decision.stable or target_revision,
        fallback=decision.fallback,
        sticky_header=serving.sticky_session_header,
        api_keys_file=api_keys_file(lm),
        rate_limit_per_minute=serving.rate_limit_per_minute,
        max_request_bytes=serving.max_request_bytes,
        max_tokens_limit=serving.max_tokens,
        scale_from_zero_timeout_s=float(lm.spec.autoscaling.scale_from_zero_timeout_seconds),
        stream_interval_ms=serving.stream_interval_milliseconds,
        stream_chunks_per_s=serving.stream_chunks_per_second,
    )


def router_app(lm: LanguageModel, config: contract.RouterConfig) -> dict[str, Any]:
    spec = lm.spec
    # The Router holds every request in flight (including ones waiting for a scale-from-zero), so its
    # concurrency cap is the replicas' total, never Serve's default of 5.
    ongoing = max(
        ROUTER_MIN_ONGOING,
        spec.serving.max_ongoing_requests * spec.autoscaling.max_replicas * max(1, len(config.weights)),
    )
    return {
        "name": contract.ROUTER_APP,
        "import_path": contract.ROUTER_IMPORT_PATH,
        "route_prefix": "/",
        "args": contract.RouterArgs(model_name=lm.metadata.name).model_dump(mode="json"),
        "deployments": [
            {
                "name": contract.ROUTER_DEPLOYMENT,
                "num_replicas": 1,
                "max_ongoing_requests": ongoing,
                "ray_actor_options": {"num_cpus": 0},
                "user_config": config.model_dump(mode="json"),
            }
        ],
    }


def _stable_args(args: contract.ServerArgs) -> dict[str, Any]:
    """A revision's args as JSON, leaving out fields added later while they hold their defaults.

    Serve restarts an application whose args change: without this, upgrading the operator would restart the
    replicas of every deployed revision although nothing they run changed.
    """
    dumped = args.model_dump(mode="json")
    if dumped["tensor_parallel_size"] == 1:
        del dumped["tensor_parallel_size"]
    if dumped["model"]["engine"] == "auto":
        del dumped["model"]["engine"]
    return dumped


def autoscaling_config(autoscaling: AutoscalingSpec, min_replicas: int) -> dict[str, Any]:
    """Serve's autoscaling_config; metric queueLength swaps Serve's rule for lmops' queue-length policy."""
    config: dict[str, Any] = {
        "min_replicas": min_replicas,
        "max_replicas": max(min_replicas, autoscaling.max_replicas),
        "target_ongoing_requests": autoscaling.target_ongoing_requests,
        "upscale_delay_s": float(autoscaling.upscale_delay_seconds),
        "downscale_delay_s": float(autoscaling.downscale_delay_seconds),
    }
    if autoscaling.metric == "queueLength":
        config["policy"] = {
            "policy_function": contract.QUEUE_POLICY_IMPORT_PATH,
            "policy_kwargs": {"target_queue_length": autoscaling.target_queue_length},
        }
    return config


def server_app(
    lm: LanguageModel, revision: str, data: Mapping[str, Any], *, keep_warm: bool
) -> dict[str, Any]:
    """One revision's application; ``keep_warm`` holds at least one replica for a weight-0 fallback."""
    autoscaling = lm.spec.autoscaling
    min_replicas = max(1, autoscaling.min_replicas) if keep_warm else autoscaling.min_replicas
    return {
        "name": contract.server_app_name(revision),
        "import_path": contract.SERVER_IMPORT_PATH,
        "route_prefix": None,
        "args": _stable_args(server_args(lm.metadata.name, revision, data)),
        "deployments": [
            {
                "name": contract.SERVER_DEPLOYMENT,
                "max_ongoing_requests": lm.spec.serving.max_ongoing_requests,
                "ray_actor_options": actor_options(data["resources"]),
                "autoscaling_config": autoscaling_config(autoscaling, min_replicas),
                "health_check_period_s": HEALTH_CHECK_PERIOD_S,
                "health_check_timeout_s": HEALTH_CHECK_TIMEOUT_S,
                **tensor_parallel_placement(data),
            }
        ],
    }


def build_serve_config(
    lm: LanguageModel,
    decision: TrafficDecision,
    revision_data: Mapping[str, Mapping[str, Any]],
    target_revision: str | None = None,
) -> dict[str, Any]:
    """The serve config for the revisions in ``decision.weights`` (each must have its data).

    ``target_revision`` names the Router's stable revision while no revision has become stable yet (the
    first deploy); it defaults to the revision with the highest weight.
    """
    missing = sorted(set(decision.weights) - set(revision_data))
    if missing:
        raise KeyError(f"no revision data for deployed revisions {missing}")
    target = target_revision or max(sorted(decision.weights), key=lambda r: decision.weights[r])
    config = router_config(lm, decision, target)
    servers = [
        server_app(
            lm,
            revision,
            revision_data[revision],
            keep_warm=decision.weights[revision] == 0 and revision == decision.fallback,
        )
        for revision in sorted(decision.weights)
    ]
    return {"applications": [router_app(lm, config), *servers]}
