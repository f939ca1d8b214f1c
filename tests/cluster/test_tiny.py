"""The user's path on a real node: `helm install` lmops, `kubectl apply -f examples/tiny.yaml`, wait for
Ready (the `tiny` fixture), then call the model through its Service with the real `openai` client, from the
host and from a pod that resolves the Service's name through the cluster's DNS."""

from __future__ import annotations

import pytest
from openai import OpenAI

from tests.support.node import Node, Report

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(3600)]

CLIENT_SCRIPT = """
from openai import OpenAI
client = OpenAI(base_url="http://tiny.default.svc.cluster.local:8000/v1", api_key="unused", max_retries=0)
model = client.models.list().data[0].id
completion = client.completions.create(model=model, prompt="Hello", max_tokens=8)
print("ANSWER", completion.choices[0].finish_reason, completion.usage.completion_tokens)
"""


def test_tiny_example_is_served_through_its_service(
    lmops: Node, tiny: dict[str, float], report: Report
) -> None:
    node = lmops
    # Every Ray pod of the model passes the readiness probe KubeRay gives it (head and worker).
    node.wait_pods_ready("tiny", timeout=180)
    report(f"tiny: replicas by pod {node.replica_pods('tiny')}")
    client = OpenAI(base_url=node.service_url("tiny") + "/v1", api_key="unused", max_retries=0, timeout=60)
    model = client.models.list().data[0].id
    completion = client.completions.create(model=model, prompt="Hello", max_tokens=8)
    assert completion.choices[0].finish_reason in {"length", "stop"}
    assert completion.usage is not None and completion.usage.completion_tokens > 0

    # The same call from inside the cluster: the Service's DNS name through CoreDNS, over the pod network.
    node.kubectl(
        "run", "openai-client", "--image", node.images["CLIENT_IMAGE"], "--image-pull-policy=Never",
        "--restart=Never", "--command", "--", "python3", "-c", CLIENT_SCRIPT,
    )  # fmt: skip
    try:
        phase = node.wait_for(
            "the client pod to finish",
            lambda: (
                node.get("pod", "openai-client")["status"].get("phase") in {"Succeeded", "Failed"}
                and node.get("pod", "openai-client")["status"]["phase"]
            ),
            timeout=300,
        )
        logs = node.kubectl("logs", "openai-client")
        assert phase == "Succeeded", logs
        assert "ANSWER" in logs, logs
    finally:
        node.kubectl("delete", "pod", "openai-client", "--wait=false")
