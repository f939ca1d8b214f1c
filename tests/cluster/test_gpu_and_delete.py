"""GPU manifests on the node: examples/gpt2-canary.yaml's pods are scheduled with the GPU request, toleration
and node label the API promises (the node advertises the extended resource nvidia.com/gpu and the label
nvidia.com/gpu.product; nothing here has a GPU, so the model never loads). Then deleting the LanguageModel
removes every pod and object made for it.

The example's CPU and memory are scaled down to what a 2-CPU node has; its GPU fields are kept as they are.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from testkit.controlplane import REPO_ROOT
from tests.support.node import Node

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(3600)]

NAMESPACE = "gpu"
MODEL_LABEL = "lmops.io/model"


def _scaled_down_example() -> dict[str, Any]:
    body = yaml.safe_load((REPO_ROOT / "examples" / "gpt2-canary.yaml").read_text())
    body["metadata"]["namespace"] = NAMESPACE
    runtime = body["spec"]["runtime"]
    runtime.update(cpu="100m", memory="256Mi", head={"cpu": "100m", "memory": "512Mi"})
    return body


def _pods(node: Node) -> list[dict[str, Any]]:
    return list(node.get("pods", "-n", NAMESPACE, "-l", f"{MODEL_LABEL}=gpt2")["items"])


def _scheduled_worker(node: Node) -> dict[str, Any] | None:
    for pod in _pods(node):
        if pod["metadata"]["labels"].get("ray.io/node-type") != "worker":
            continue
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        if conditions.get("PodScheduled") == "True":
            return pod
    return None


def test_gpu_pods_are_scheduled_as_promised_and_deleting_the_model_removes_everything(lmops: Node) -> None:
    node = lmops
    node.kubectl("create", "namespace", NAMESPACE)
    node.kubectl("create", "secret", "generic", "gpt2-api-keys", "-n", NAMESPACE, "--from-literal=keys=k1")
    example = _scaled_down_example()
    node.kubectl("apply", "-f", "-", input=yaml.safe_dump(example))
    worker = node.wait_for(
        "a scheduled GPU worker pod", lambda: _scheduled_worker(node), timeout=600, detail=node.diagnostics
    )
    container = worker["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert worker["spec"]["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-L4"
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert toleration in worker["spec"]["tolerations"]
    assert worker["spec"]["nodeName"] == "lmops-node"

    made = {
        kind: [o["metadata"]["name"] for o in node.get(kind, "-n", NAMESPACE)["items"]]
        for kind in ("rayservices", "rayclusters", "services", "controllerrevisions")
    }
    assert made["rayservices"] and made["rayclusters"] and made["controllerrevisions"], made

    node.kubectl("delete", "languagemodel", "gpt2", "-n", NAMESPACE, "--timeout=300s")

    def everything_gone() -> bool:
        left = [
            f"{kind}/{o['metadata']['name']}"
            for kind in ("rayservices", "rayclusters", "controllerrevisions", "pods", "poddisruptionbudgets")
            for o in node.get(kind, "-n", NAMESPACE)["items"]
        ]
        services = [s["metadata"]["name"] for s in node.get("services", "-n", NAMESPACE)["items"]]
        return not left and not services

    node.wait_for("every object of gpt2 to be deleted", everything_gone, timeout=300, detail=node.diagnostics)
    node.kubectl("delete", "namespace", NAMESPACE, "--wait=false")
