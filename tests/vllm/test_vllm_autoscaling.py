"""Queue-length autoscaling on the vLLM engine, real local Ray: a queue in vLLM's scheduler adds a replica.

The revision's ``autoscaling_config`` is the operator's own rendering of ``spec.autoscaling`` with metric
queueLength. vLLM runs at most 2 sequences (``maxBatchSize`` 2), 8 clients stream, so about 6 requests wait in
its scheduler: the replica reports them (``num_requests_waiting``) and the policy asks for a second replica,
although Serve's own rule at targetOngoingRequests 32 would keep one (8 ongoing < 32). The test waits for
the second replica to run (a vLLM engine start), so both engines are shut down by their replicas, not killed
while starting.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ray import serve

from lmops_operator.api import AutoscalingSpec
from lmops_operator.planning.serve_config import autoscaling_config
from lmops_runtime.config import SERVER_DEPLOYMENT, RouterConfig, server_app_name
from testkit.load import running_replicas
from tests.runtime import serve_configs as sc
from tests.runtime.router_support import deployed

pytestmark = pytest.mark.slow

MODEL = "tiny"
REVISION = "q1"
CLIENTS = 8


@pytest.fixture(scope="module")
def base_url(ray_local: None, tiny_generate_model_dir: Path) -> Iterator[str]:
    spec = AutoscalingSpec.model_validate(
        {
            "minReplicas": 1,
            "maxReplicas": 2,
            "targetOngoingRequests": 32,
            "metric": "queueLength",
            "targetQueueLength": 1,
            "upscaleDelaySeconds": 0,
        }
    )
    server = sc.server_app(
        REVISION,
        tiny_generate_model_dir,
        model_name=MODEL,
        engine="vllm",
        max_batch_size=2,
        autoscaling=autoscaling_config(spec, spec.min_replicas),
        max_ongoing_requests=32,
    )
    router = sc.router_app(RouterConfig(weights={REVISION: 100}, stable=REVISION), model_name=MODEL)
    with deployed(sc.document(router, server)) as url:
        yield url


def test_a_queue_in_vllms_scheduler_adds_a_replica(base_url: str) -> None:
    stop = threading.Event()
    failures: list[str] = []

    def client() -> None:
        body = {"model": MODEL, "prompt": "queue", "max_tokens": 48, "temperature": 0}
        with httpx.Client(timeout=300) as http:
            while not stop.is_set():
                response = http.post(f"{base_url}/v1/completions", json=body)
                if response.status_code != 200:
                    failures.append(response.text[:200])

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    handle = serve.get_deployment_handle(SERVER_DEPLOYMENT, app_name=server_app_name(REVISION))
    started = time.monotonic()
    for thread in threads:
        thread.start()
    waiting_seen = 0.0
    try:
        while running_replicas(REVISION) < 2:
            assert time.monotonic() - started < 400, f"no second replica; queue seen: {waiting_seen}"
            stats = handle.engine_stats.remote().result(timeout_s=60)
            waiting_seen = max(waiting_seen, stats.get("num_requests_waiting", 0.0))
            time.sleep(2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(300)
    figures = {"seconds_to_2_running": round(time.monotonic() - started, 1), "max_waiting": waiting_seen}
    print("\nVLLM QUEUE-LENGTH AUTOSCALING " + json.dumps(figures))
    assert waiting_seen >= 1
    assert failures == [], failures[:3]
