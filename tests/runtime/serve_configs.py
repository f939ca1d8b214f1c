"""Builds serve config documents (the shape of RayService.spec.serveConfigV2) for runtime tests.

The operator's planner builds the production document from the same config.py models; this test-only
builder stays deliberately small so a test reads as "these revisions, these weights".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmops_runtime import config as contract


def server_app(
    revision: str,
    model_dir: Path | str,
    *,
    model_name: str = "tiny",
    task: contract.Task = "generate",
    labels: list[str] | None = None,
    num_replicas: int | None = 1,
    autoscaling: dict[str, Any] | None = None,
    max_ongoing_requests: int = 32,
    engine: contract.Engine = "auto",
    max_batch_size: int = 8,
) -> dict[str, Any]:
    source = model_dir if str(model_dir).startswith(("builtin://", "file://")) else f"file://{model_dir}"
    args = contract.ServerArgs(
        model_name=model_name,
        revision=revision,
        model=contract.ModelSpec(source=str(source), task=task, labels=labels, engine=engine),
        batching=contract.BatchingConfig(max_batch_size=max_batch_size),
    )
    deployment: dict[str, Any] = {
        "name": contract.SERVER_DEPLOYMENT,
        "max_ongoing_requests": max_ongoing_requests,
        "ray_actor_options": {"num_cpus": 0},
        "health_check_period_s": 2,
    }
    if autoscaling is not None:
        deployment["autoscaling_config"] = autoscaling
    else:
        deployment["num_replicas"] = num_replicas
    return {
        "name": contract.server_app_name(revision),
        "import_path": contract.SERVER_IMPORT_PATH,
        "route_prefix": None,
        "args": args.model_dump(mode="json"),
        "deployments": [deployment],
    }


def router_app(
    router_config: contract.RouterConfig, *, model_name: str = "tiny", num_replicas: int = 1
) -> dict[str, Any]:
    return {
        "name": contract.ROUTER_APP,
        "import_path": contract.ROUTER_IMPORT_PATH,
        "route_prefix": "/",
        "args": contract.RouterArgs(model_name=model_name).model_dump(mode="json"),
        "deployments": [
            {
                "name": contract.ROUTER_DEPLOYMENT,
                "num_replicas": num_replicas,
                "ray_actor_options": {"num_cpus": 0},
                "user_config": router_config.model_dump(mode="json"),
            }
        ],
    }


def document(router: dict[str, Any], *servers: dict[str, Any]) -> dict[str, Any]:
    return {"applications": [router, *servers]}
