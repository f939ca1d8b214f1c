"""The vLLM engine behind the Router on a real local Ray: what differs from the transformers engine.

The OpenAI surface itself is checked by running tests/runtime/test_openai_parity.py in this environment too
(engine auto picks vLLM here). This module checks what is vLLM's own: the revision really runs on vLLM and
agrees with the transformers engine on greedy text, many concurrent streams batch, beam search is a clear 400,
engine metrics come back through the handle, and the engine's processes end with the replica.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import psutil
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families
from ray import serve

from lmops_runtime import local
from lmops_runtime.config import SERVER_DEPLOYMENT, ModelSpec, RouterConfig, server_app_name
from lmops_runtime.loading import load_model
from tests.runtime import serve_configs as sc
from tests.runtime.router_support import deployed, redeploy

pytestmark = pytest.mark.slow

MODEL = "tiny"
REVISION = "v1"


def _engine_processes() -> list[psutil.Process]:
    """vLLM engine-core processes started under this test session's Ray (descendants of this process)."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if "EngineCore" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            continue
    return found


@pytest.fixture(scope="module")
def base_url(ray_local: None, tiny_generate_model_dir: Path) -> Iterator[str]:
    config = RouterConfig(weights={REVISION: 100}, stable=REVISION, stream_interval_ms=0)
    document = sc.document(
        sc.router_app(config, model_name=MODEL),
        sc.server_app(REVISION, tiny_generate_model_dir, model_name=MODEL, engine="vllm", max_batch_size=32),
    )
    with deployed(document) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_the_revision_runs_on_vllm_and_matches_transformers_greedy(
    client: openai.OpenAI, tiny_generate_model_dir: Path
) -> None:
    assert _engine_processes(), "no vLLM EngineCore process runs under this session"
    prompt = "The quick brown fox"
    out = client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=0)
    assert out.usage is not None and out.usage.completion_tokens == 12
    loaded = load_model(ModelSpec(source=f"file://{tiny_generate_model_dir}", engine="transformers"))
    ids = loaded.tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        generated = loaded.model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False
        )
    expected = loaded.tokenizer.decode(generated[0, ids.shape[1] :], skip_special_tokens=True)
    assert out.choices[0].text == expected


def test_beam_search_is_a_clear_400(base_url: str) -> None:
    body = {"prompt": "abc", "max_new_tokens": 3, "strategy": "beam", "num_beams": 2}
    response = httpx.post(f"{base_url}/generate", json=body, timeout=120)
    assert response.status_code == 400, response.text
    assert "vLLM" in response.json()["error"]["message"]


def test_many_concurrent_streams_all_complete(base_url: str) -> None:
    async def one(http: httpx.AsyncClient, i: int) -> tuple[str, int]:
        body = {"model": MODEL, "prompt": f"n{i}", "max_tokens": 16, "temperature": 0, "stream": True}
        body["stream_options"] = {"include_usage": True}
        async with http.stream("POST", f"{base_url}/v1/completions", json=body) as response:
            assert response.status_code == 200
            lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        usage = httpx.Response(200, content=lines[-2].removeprefix("data: ")).json()["usage"]
        return lines[-2], int(usage["completion_tokens"])

    async def run() -> list[tuple[str, int]]:
        async with httpx.AsyncClient(timeout=300) as http:
            return await asyncio.gather(*(one(http, i) for i in range(24)))

    results = asyncio.run(run())
    assert all(tokens == 16 for _, tokens in results)


def test_engine_metrics_through_the_handle_stats_and_prometheus(client: openai.OpenAI, base_url: str) -> None:
    client.completions.create(model=MODEL, prompt="metrics", max_tokens=8, temperature=0)
    handle = serve.get_deployment_handle(SERVER_DEPLOYMENT, app_name=server_app_name(REVISION))
    stats = handle.engine_stats.remote().result(timeout_s=60)
    assert stats["time_to_first_token_seconds_count"] >= 1
    assert stats["time_to_first_token_seconds_sum"] > 0
    assert stats["inter_token_latency_seconds_count"] >= 7
    assert 0.0 <= stats["kv_cache_usage_perc"] <= 1.0
    assert stats["num_requests_waiting"] >= 0
    # The replica pushes its engine metrics; the Router reports them per revision, vLLM's names in /metrics.
    deadline = time.monotonic() + 30
    engine: dict[str, float] = {}
    while time.monotonic() < deadline:
        engine = httpx.get(f"{base_url}/stats", timeout=30).json()["revisions"][REVISION].get("engine", {})
        if engine.get("time_to_first_token_seconds_count", 0) >= stats["time_to_first_token_seconds_count"]:
            break
        time.sleep(1)
    assert engine["replicas"] == 1 and engine["inter_token_latency_seconds_count"] >= 7
    metrics = httpx.get(f"{base_url}/metrics", timeout=30).text
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    ttft = families["vllm:time_to_first_token_seconds"].samples
    assert any(
        s.name.endswith("_count") and s.labels == {"revision": REVISION} and s.value >= 1 for s in ttft
    )
    assert "vllm:num_requests_waiting" in families and "vllm:kv_cache_usage_perc" in families


def test_stream_interval_merges_chunks_without_changing_the_text(
    base_url: str, tiny_generate_model_dir: Path
) -> None:
    """vLLM's own frontend already merges tokens a slow reader has not taken yet, so chunk-per-token is not
    promised at interval 0 (the transformers tier checks that); the window still merges and keeps the text."""

    def stream_with_interval(interval_ms: int) -> tuple[str, int]:
        config = RouterConfig(weights={REVISION: 100}, stable=REVISION, stream_interval_ms=interval_ms)
        server = sc.server_app(
            REVISION, tiny_generate_model_dir, model_name=MODEL, engine="vllm", max_batch_size=32
        )
        redeploy(sc.document(sc.router_app(config, model_name=MODEL), server))
        body = {"model": MODEL, "prompt": "Hello", "max_tokens": 48, "temperature": 0, "stream": True}
        response = httpx.post(f"{base_url}/v1/completions", json=body, timeout=120)
        lines = [line[6:] for line in response.text.splitlines() if line.startswith("data: {")]
        texts = [c["text"] for line in lines for c in json.loads(line)["choices"] if c.get("text")]
        return "".join(texts), len(texts)

    each_text, _ = stream_with_interval(0)
    merged_text, merged_chunks = stream_with_interval(1000)
    stream_with_interval(0)  # as the module's fixture deployed it
    assert merged_text == each_text and merged_chunks <= 3


def test_engine_processes_end_with_the_replica(base_url: str) -> None:
    """Last in the module: deleting the revision's application must not leave vLLM's engine behind."""
    assert _engine_processes()
    local.delete_apps([server_app_name(REVISION)])
    deadline = time.monotonic() + 60
    while _engine_processes() and time.monotonic() < deadline:
        time.sleep(1)
    assert not _engine_processes(), "vLLM engine processes outlived their replica"
