"""``RayService <name>`` (ray.io/v1): the serve config plus the Ray cluster it runs on.

Cluster shape comes from today's spec; anything that changes ``rayClusterConfig`` (image, pod resources,
mounted claims) makes KubeRay build a new cluster (upgradeStrategy NewCluster) while the old one serves,
whereas revisions and traffic weights live in ``serveConfigV2`` and are applied in place.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import yaml

from lmops_operator.api import LanguageModel, LanguageModelSpec
from lmops_operator.builders.meta import child_metadata
from lmops_operator.names import API_KEYS_MOUNT_PATH, MODEL_LABEL, ray_service_name
from lmops_runtime.config import PVC_MOUNT_ROOT
from lmops_runtime.contract import HTTP_PORT

RAY_VERSION = "2.60.0"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
HEAD_CONTAINER = "ray-head"
WORKER_CONTAINER = "ray-worker"
SHM_VOLUME = "dshm"
API_KEYS_VOLUME = "api-keys"
HEAD_PORTS = (("gcs", 6379), ("dashboard", 8265), ("client", 10001), ("serve", HTTP_PORT))
# The autoscaler sidecar in the head pod only polls Ray and the API server every few seconds; KubeRay's
# default reserves 500m for it, a model worker's worth on a small node (where a canary's worker must fit).
AUTOSCALER_CPU = "200m"
AUTOSCALER_MEMORY = "512Mi"


def worker_group_name(spec: LanguageModelSpec) -> str:
    return "gpu" if spec.runtime.gpus > 0 else "cpu"


def revision_slots(spec: LanguageModelSpec) -> int:
    """How many revisions can hold replicas at once: stable + new, plus a warm previous one.

    The worker group's bounds are sized for that worst case from the spec alone, so adding or removing
    a canary never edits ``rayClusterConfig`` (which KubeRay would answer with a whole new cluster); the
    in-tree autoscaler adds workers only when Serve actually has replicas to place.
    """
    return 2 + (1 if spec.failover.keep_previous_warm else 0)


def serialize_serve_config(document: Mapping[str, Any]) -> str:
    """Stable YAML (key order kept) so an unchanged document is byte-for-byte the same string."""
    # Keyed by the document's JSON (C-encoded, a small part of the YAML dump's cost): a model at rest renders
    # the same document at every reconcile.
    return _yaml_of(json.dumps(document, separators=(",", ":")))


@functools.lru_cache(maxsize=4096)
def _yaml_of(document_json: str) -> str:
    # libyaml's dumper writes the same text as PyYAML's pure-Python one, 10x faster.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    document = json.loads(document_json)
    return yaml.dump(document, Dumper=dumper, sort_keys=False, default_flow_style=False, width=1000)


def _pvc_claims(revision_data: Iterable[Mapping[str, Any]]) -> list[str]:
    claims = set()
    for data in revision_data:
        parts = urlsplit(str(data["model"]["source"]))
        if parts.scheme == "pvc":
            claims.add(parts.netloc)
    return sorted(claims)


def _volumes(lm: LanguageModel, claims: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pod volumes and container mounts: in-memory /dev/shm, the API-key Secret, model claims."""
    volumes: list[dict[str, Any]] = [{"name": SHM_VOLUME, "emptyDir": {"medium": "Memory"}}]
    mounts: list[dict[str, Any]] = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}]
    ref = lm.spec.serving.api_key_secret_ref
    if ref is not None:
        volumes.append(
            {
                "name": API_KEYS_VOLUME,
                "secret": {"secretName": ref.name, "items": [{"key": ref.key, "path": ref.key}]},
            }
        )
        mounts.append({"name": API_KEYS_VOLUME, "mountPath": API_KEYS_MOUNT_PATH, "readOnly": True})
    for index, claim in enumerate(claims):
        volume = f"model-{index}"
        volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        mounts.append({"name": volume, "mountPath": f"{PVC_MOUNT_ROOT}/{claim}", "readOnly": True})
    return volumes, mounts


def _resources(cpu: str, memory: str, extra: Mapping[str, int] | None = None) -> dict[str, Any]:
    amounts: dict[str, Any] = {"cpu": cpu, "memory": memory, **{k: str(v) for k, v in (extra or {}).items()}}
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _head_group(lm: LanguageModel, image: str, volumes: list[Any], mounts: list[Any]) -> dict[str, Any]:
    spec = lm.spec
    # No CPUs advertised on the head: model replicas are placed on workers only, so a replica's pod can fail
    # (or be drained) without taking the head, the Serve controller and the Router with it, and extra
    # replicas are what makes the autoscaler add workers.
    params = {"dashboard-host": "0.0.0.0", "num-cpus": "0"}
    return {
        "rayStartParams": params,
        "template": {
            "metadata": {"labels": {MODEL_LABEL: lm.metadata.name}},
            "spec": {
                "containers": [
                    {
                        "name": HEAD_CONTAINER,
                        "image": image,
                        "ports": [{"name": name, "containerPort": port} for name, port in HEAD_PORTS],
                        "resources": _resources(spec.runtime.head.cpu, spec.runtime.head.memory),
                        "volumeMounts": mounts,
                    }
                ],
                "volumes": volumes,
            },
        },
    }


def _worker_group(lm: LanguageModel, image: str, volumes: list[Any], mounts: list[Any]) -> dict[str, Any]:
    spec = lm.spec
    runtime = spec.runtime
    gpus = {runtime.gpu_resource_name: runtime.gpus} if runtime.gpus > 0 else None
    pod: dict[str, Any] = {
        "containers": [
            {
                "name": WORKER_CONTAINER,
                "image": image,
                "resources": _resources(runtime.cpu, runtime.memory, gpus),
                "volumeMounts": mounts,
            }
        ],
        "volumes": volumes,
    }
    selector = dict(runtime.node_selector or {})
    if runtime.gpu_type is not None:
        selector[GPU_PRODUCT_LABEL] = runtime.gpu_type
    if selector:
        pod["nodeSelector"] = dict(sorted(selector.items()))
    if runtime.tolerations:
        pod["tolerations"] = [
            t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in runtime.tolerations
        ]
    minimum = spec.autoscaling.min_replicas
    return {
        "groupName": worker_group_name(spec),
        "replicas": minimum,
        "minReplicas": minimum,
        "maxReplicas": spec.autoscaling.max_replicas * revision_slots(spec),
        "rayStartParams": {},
        "template": {"metadata": {"labels": {MODEL_LABEL: lm.metadata.name}}, "spec": pod},
    }


def _gcs_fault_tolerance(lm: LanguageModel) -> dict[str, Any] | None:
    gcs = lm.spec.failover.gcs_fault_tolerance
    if gcs is None:
        return None
    options: dict[str, Any] = {"redisAddress": gcs.redis_address}
    ref = gcs.redis_password_secret_ref
    if ref is not None:
        options["redisPassword"] = {"valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
    return options


def _autoscaler_options(spec: LanguageModelSpec) -> dict[str, Any]:
    """The Ray autoscaler sidecar's resources and, when the spec sets one, its idle timeout: the Ray
    autoscaler (not KubeRay) reads ``idleTimeoutSeconds`` from the RayCluster. Left out when unset, so a
    spec without it renders the same cluster as before the field existed (no new cluster on upgrade)."""
    options: dict[str, Any] = {"resources": _resources(AUTOSCALER_CPU, AUTOSCALER_MEMORY)}
    idle = spec.autoscaling.worker_idle_timeout_seconds
    if idle is not None:
        options["idleTimeoutSeconds"] = idle
    return options


def runtime_image(lm: LanguageModel, default_image: str) -> str:
    return lm.spec.runtime.image or default_image


def build_ray_service(
    lm: LanguageModel,
    serve_config: Mapping[str, Any],
    revision_data: Iterable[Mapping[str, Any]],
    default_image: str,
) -> dict[str, Any]:
    """The RayService for ``serve_config``; ``revision_data`` of the deployed revisions picks PVC mounts."""
    image = runtime_image(lm, default_image)
    volumes, mounts = _volumes(lm, _pvc_claims(revision_data))
    cluster: dict[str, Any] = {
        "rayVersion": RAY_VERSION,
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": _autoscaler_options(lm.spec),
        "headGroupSpec": _head_group(lm, image, copy.deepcopy(volumes), copy.deepcopy(mounts)),
        "workerGroupSpecs": [_worker_group(lm, image, copy.deepcopy(volumes), copy.deepcopy(mounts))],
    }
    gcs = _gcs_fault_tolerance(lm)
    if gcs is not None:
        cluster["gcsFaultToleranceOptions"] = gcs
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": child_metadata(lm, ray_service_name(lm.metadata.name)),
        "spec": {
            "upgradeStrategy": {"type": "NewCluster"},
            "serveConfigV2": serialize_serve_config(serve_config),
            "rayClusterConfig": cluster,
        },
    }


def live_image(ray_service: Mapping[str, Any] | None) -> str | None:
    """Image of the head container in an observed RayService (None when absent or malformed)."""
    try:
        containers = ray_service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"][  # type: ignore[index]
            "containers"
        ]
        for container in containers:
            if container.get("name") == HEAD_CONTAINER:
                return str(container["image"])
    except (KeyError, TypeError):
        return None
    return None
