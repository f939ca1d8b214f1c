"""Builders: the RayService, Service, ControllerRevision and PDB a LanguageModel turns into."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from lmops_operator.builders.controllerrevision import build_controller_revision
from lmops_operator.builders.rayservice import live_image
from lmops_operator.builders.service import build_service
from lmops_operator.planning.plan import Observed, Plan, plan
from lmops_operator.planning.quantity import byte_count, cpu_count
from lmops_operator.planning.revision import revision_data
from lmops_runtime import config as contract
from tests.support.languagemodel_cases import merge
from tests.unit.planner_helpers import SETTINGS, T0, UID, by_kind, example, model


def _plan(name: str, change: dict[str, Any] | None = None) -> Plan:
    body = example(name) if change is None else merge(example(name), change)
    return plan(model(body), Observed(now=T0), SETTINGS)


def _ray(result: Plan) -> dict[str, Any]:
    return by_kind(result, "RayService")[0]


def _serve(result: Plan) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(_ray(result)["spec"]["serveConfigV2"])
    return doc


def test_every_child_is_owned_and_labelled() -> None:
    for obj in _plan("gpt2-canary").objects:
        meta = obj["metadata"]
        assert meta["namespace"] == "models"
        assert meta["labels"]["lmops.io/model"] == "gpt2"
        (ref,) = meta["ownerReferences"]
        assert ref == {
            "apiVersion": "lmops.io/v1alpha1",
            "kind": "LanguageModel",
            "name": "gpt2",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def test_service_selects_ready_serve_pods_of_the_model() -> None:
    service = build_service(model(example("tiny")))
    assert service["metadata"]["name"] == "tiny"
    assert service["spec"]["selector"] == {"lmops.io/model": "tiny", "ray.io/serve": "true"}
    assert service["spec"]["ports"][0] | {} == {
        "name": "http",
        "port": 8000,
        "targetPort": 8000,
        "protocol": "TCP",
        "appProtocol": "http",
    }


def test_controller_revision() -> None:
    lm = model(example("tiny"))
    data = revision_data(lm.spec)
    obj = build_controller_revision(lm, "abc123", 7, data)
    assert obj["apiVersion"] == "apps/v1" and obj["kind"] == "ControllerRevision"
    assert obj["metadata"]["name"] == "tiny-abc123"
    assert obj["metadata"]["labels"]["lmops.io/revision"] == "abc123"
    assert obj["revision"] == 7 and obj["data"] == data


def test_ray_cluster_for_gpu_model() -> None:
    result = _plan("gpt2-canary")
    spec = _ray(result)["spec"]
    assert spec["upgradeStrategy"] == {"type": "NewCluster"}
    cluster = spec["rayClusterConfig"]
    assert cluster["rayVersion"] == "2.60.0" and cluster["enableInTreeAutoscaling"] is True
    sidecar = {"cpu": "200m", "memory": "512Mi"}  # not KubeRay's 500m: a worker's worth on a small node
    assert cluster["autoscalerOptions"]["resources"] == {"requests": sidecar, "limits": sidecar}
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    head_pod = head["template"]["spec"]
    assert head["template"]["metadata"]["labels"] == {"lmops.io/model": "gpt2"}
    (container,) = head_pod["containers"]
    assert container["image"] == "ghcr.io/lmops/runtime:test-gpu"  # the CUDA variant for a GPU replica
    assert {p["containerPort"] for p in container["ports"]} == {6379, 8265, 10001, 8000}
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in head_pod["volumes"]
    (group,) = cluster["workerGroupSpecs"]
    assert group["groupName"] == "gpu"
    assert (group["minReplicas"], group["replicas"], group["maxReplicas"]) == (1, 1, 8)
    pod = group["template"]["spec"]
    assert group["template"]["metadata"]["labels"] == {"lmops.io/model": "gpt2"}
    worker = pod["containers"][0]
    assert worker["resources"]["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    for container_ in (container, worker):
        mount = next(m for m in container_["volumeMounts"] if m["name"] == "api-keys")
        assert mount == {"name": "api-keys", "mountPath": "/etc/lmops/api-keys", "readOnly": True}
    keys = next(v for v in pod["volumes"] if v["name"] == "api-keys")
    assert keys["secret"] == {"secretName": "gpt2-api-keys", "items": [{"key": "keys", "path": "keys"}]}
    assert "gcsFaultToleranceOptions" not in cluster


def test_worker_idle_timeout_reaches_the_ray_autoscaler() -> None:
    """spec.autoscaling.workerIdleTimeoutSeconds becomes the RayCluster's autoscalerOptions.idleTimeoutSeconds
    (read by the Ray autoscaler); unset, it is left out, so existing models keep the cluster they run on."""
    unset = _plan("gpt2-canary")
    assert "idleTimeoutSeconds" not in _ray(unset)["spec"]["rayClusterConfig"]["autoscalerOptions"]
    short = _plan("gpt2-canary", {"spec": {"autoscaling": {"workerIdleTimeoutSeconds": 15}}})
    options = _ray(short)["spec"]["rayClusterConfig"]["autoscalerOptions"]
    assert options["idleTimeoutSeconds"] == 15
    assert options["resources"] == _ray(unset)["spec"]["rayClusterConfig"]["autoscalerOptions"]["resources"]
    # A cluster setting, not a model one: the revision and the Serve applications stay as they were.
    assert by_kind(short, "ControllerRevision") == by_kind(unset, "ControllerRevision")
    assert _serve(short) == _serve(unset)


def test_ray_cluster_for_cpu_model_with_pvc_source() -> None:
    cluster = _ray(_plan("bert-classify"))["spec"]["rayClusterConfig"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # replicas go to workers only
    (group,) = cluster["workerGroupSpecs"]
    assert group["groupName"] == "cpu"
    pod = group["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert "nodeSelector" not in pod and "tolerations" not in pod
    claim = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    assert claim["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == claim["name"])
    assert mount["mountPath"] == f"{contract.PVC_MOUNT_ROOT}/models" and mount["readOnly"] is True


def test_gcs_fault_tolerance_and_warm_slots() -> None:
    cluster = _ray(_plan("failover"))["spec"]["rayClusterConfig"]
    assert cluster["gcsFaultToleranceOptions"] == {
        "redisAddress": "redis.lmops-system.svc.cluster.local:6379",
        "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "password"}}},
    }
    group = cluster["workerGroupSpecs"][0]
    assert group["maxReplicas"] == 6 * 3  # stable + canary + warm previous
    assert group["template"]["spec"]["nodeSelector"] == {
        "lmops.io/pool": "serving",
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
    }


def test_custom_gpu_resource_name() -> None:
    result = _plan("gpt2-canary", {"spec": {"runtime": {"gpuResourceName": "amd.com/gpu", "gpus": 2}}})
    limits = _ray(result)["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"][
        "containers"
    ][0]["resources"]["limits"]
    assert limits["amd.com/gpu"] == "2" and "nvidia.com/gpu" not in limits


def test_serve_config_matches_runtime_contract() -> None:
    result = _plan("gpt2-canary")
    apps = _serve(result)["applications"]
    router, server = apps
    assert router["name"] == contract.ROUTER_APP and router["route_prefix"] == "/"
    assert router["import_path"] == contract.ROUTER_IMPORT_PATH
    contract.RouterArgs.model_validate(router["args"])
    config = contract.RouterConfig.model_validate(router["deployments"][0]["user_config"])
    revision = result.target_revision
    assert config.weights == {revision: 100} and config.stable == revision
    assert config.api_keys_file == "/etc/lmops/api-keys/keys"
    assert config.sticky_header == "X-Session-Id" and config.rate_limit_per_minute == 600
    assert config.max_tokens_limit == 1024 and config.scale_from_zero_timeout_s == 120.0
    assert config.stream_interval_ms == 20
    assert server["name"] == f"rev-{revision}" and server["route_prefix"] is None
    assert server["import_path"] == contract.SERVER_IMPORT_PATH
    args = contract.ServerArgs.model_validate(server["args"])
    assert args.revision == revision and args.model.generation.top_k == 50
    (deployment,) = server["deployments"]
    assert deployment["name"] == contract.SERVER_DEPLOYMENT
    assert deployment["max_ongoing_requests"] == 64
    assert deployment["ray_actor_options"] == {
        "num_cpus": 4.0,
        "num_gpus": 1,
        "memory": int(16 * 2**30 * 0.6),
    }
    assert deployment["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 4,
        "target_ongoing_requests": 16.0,
        "upscale_delay_s": 30.0,
        "downscale_delay_s": 600.0,
    }
    assert deployment["health_check_period_s"] > 0 and deployment["health_check_timeout_s"] > 0


def test_scale_to_zero_serve_config() -> None:
    server = _serve(_plan("scale-to-zero"))["applications"][1]
    assert server["deployments"][0]["autoscaling_config"]["min_replicas"] == 0
    router = _serve(_plan("scale-to-zero"))["applications"][0]
    assert router["deployments"][0]["user_config"]["scale_from_zero_timeout_s"] == 180.0


def test_live_image() -> None:
    ray = _ray(_plan("tiny"))
    assert live_image(ray) == "ghcr.io/lmops/runtime:test"
    assert live_image({"spec": {}}) is None and live_image(None) is None


@pytest.mark.parametrize(
    ("value", "cpus", "size"),
    [
        ("500m", 0.5, 0),
        ("2", 2.0, 2),
        ("1Gi", 1073741824.0, 1073741824),
        ("1e3", 1000.0, 1000),
        ("1.5k", 1500.0, 1500),
    ],
)
def test_quantities(value: str, cpus: float, size: int) -> None:
    assert cpu_count(value) == pytest.approx(cpus)
    assert byte_count(value) == size
    with pytest.raises(ValueError):
        cpu_count("two")


@pytest.mark.slow
def test_serve_config_passes_rays_own_schema() -> None:
    """The document KubeRay PUTs to the dashboard must validate as Serve's ServeDeploySchema."""
    from ray.serve.schema import ServeDeploySchema

    for name in ("gpt2-canary", "failover", "bert-classify", "embeddings", "scale-to-zero", "tiny"):
        ServeDeploySchema.model_validate(_serve(_plan(name)))


def test_network_policy_closes_ray_internal_ports() -> None:
    (policy,) = by_kind(_plan("gpt2-canary"), "NetworkPolicy")
    assert policy["metadata"]["name"] == "gpt2-ray"
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"lmops.io/model": "gpt2"}}
    assert spec["policyTypes"] == ["Ingress"]
    own, public = spec["ingress"]
    assert own == {"from": [{"podSelector": {"matchLabels": {"lmops.io/model": "gpt2"}}}]}
    ports = {p["port"] for p in public["ports"]}
    assert ports == {8000, 8265, 8080}
    assert not ports & {6379, 10001}  # GCS and the Ray client port: code execution, own pods only
