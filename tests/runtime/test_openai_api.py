"""The Router's OpenAI and seed endpoints on a real local Ray, called with the real ``openai`` client.

One generate revision behind the Router for the whole module; limits are switched on by redeploying the
same document with a new Router user_config (a reconfigure), then switched off again.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lmops_runtime.config import RouterConfig
from tests.runtime import serve_configs as sc
from tests.runtime.router_support import deployed, redeploy, replica_actors

pytestmark = pytest.mark.slow

MODEL = "tiny"


def _document(model_dir: Path, **router: Any) -> dict[str, Any]:
    config = RouterConfig(weights={"g1": 100}, stable="g1", **router)
    return sc.document(
        sc.router_app(config, model_name=MODEL), sc.server_app("g1", model_dir, model_name=MODEL)
    )


@pytest.fixture(scope="module")
def base_url(ray_local: None, tiny_generate_model_dir: Path) -> Iterator[str]:
    with deployed(_document(tiny_generate_model_dir)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_completion_returns_text_and_usage(client: openai.OpenAI) -> None:
    out = client.completions.create(model=MODEL, prompt="Hello", max_tokens=4, temperature=0)
    assert out.object == "text_completion" and out.model == MODEL
    assert out.choices[0].finish_reason in {"stop", "length"}
    assert out.usage is not None and out.usage.prompt_tokens > 0
    assert 0 < out.usage.completion_tokens <= 4
    again = client.completions.create(model=MODEL, prompt="Hello", max_tokens=4, temperature=0)
    assert again.choices[0].text == out.choices[0].text  # greedy is deterministic


def test_chat_completion(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        max_tokens=3,
    )
    assert out.object == "chat.completion"
    assert out.choices[0].message.role == "assistant" and isinstance(out.choices[0].message.content, str)
    assert out.usage is not None and out.usage.completion_tokens <= 3


def test_streaming_chat_ends_with_usage_and_done(client: openai.OpenAI, base_url: str) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "count"}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = [c for c in chunks if c.choices]
    assert content[0].choices[0].delta.role == "assistant"
    assert content[-1].choices[0].finish_reason in {"stop", "length"}
    assert chunks[-1].usage is not None and 0 < chunks[-1].usage.completion_tokens <= 6
    raw = httpx.post(
        f"{base_url}/v1/completions",
        json={"model": MODEL, "prompt": "x", "max_tokens": 3, "stream": True},
        timeout=120,
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = [line for line in raw.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) >= 2


def test_streaming_completion_matches_unary_text(client: openai.OpenAI) -> None:
    unary = client.completions.create(model=MODEL, prompt="abc", max_tokens=5, temperature=0)
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model=MODEL, prompt="abc", max_tokens=5, temperature=0, stream=True
        )
        if c.choices
    )
    assert streamed == unary.choices[0].text


def test_models_lists_the_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [MODEL]


def test_seed_generate_endpoint(base_url: str) -> None:
    body = {"prompt": "abc", "max_new_tokens": 3, "strategy": "sample", "temperature": 0.8, "seed": 7}
    first = httpx.post(f"{base_url}/generate", json=body, timeout=120).json()
    second = httpx.post(f"{base_url}/generate", json=body, timeout=120).json()
    assert first["revision"] == "g1" and first["completion_tokens"] <= 3
    assert first["text"] == second["text"]  # a seed makes sampling repeatable


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/completions", b"{not json", 400, "invalid_json"),
        ("/v1/completions", b"[1, 2]", 400, "invalid_json"),
        ("/v1/completions", b'{"model": "tiny", "prompt": 5}', 400, None),
        ("/v1/completions", b'{"model": "tiny", "prompt": "x", "max_tokens": "many"}', 400, None),
        (
            "/v1/completions",
            b'{"model": "tiny", "prompt": "x", "max_tokens": 100000}',
            400,
            "max_tokens_exceeded",
        ),
        ("/v1/completions", b'{"model": "other", "prompt": "x"}', 404, "model_not_found"),
        ("/v1/chat/completions", b'{"model": "tiny", "messages": []}', 400, None),
        (
            "/v1/chat/completions",
            b'{"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]}',
            400,
            None,
        ),
        ("/generate", b'{"prompt": "x", "bogus": 1}', 400, None),
        ("/v1/nothing-here", b"{}", 404, "not_found"),
    ],
)
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(
    base_url: str, path: str, body: bytes, status: int, code: str | None
) -> None:
    response = httpx.post(f"{base_url}{path}", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["code"] == code
    ok = httpx.post(f"{base_url}/generate", json={"prompt": "x", "max_new_tokens": 1}, timeout=120)
    assert ok.status_code == 200


def test_openai_client_raises_typed_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-unknown", prompt="x")
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.completions.create(model=MODEL, prompt="x", max_tokens=10**6)


def test_stats_and_metrics_count_calls(base_url: str) -> None:
    before = httpx.get(f"{base_url}/stats").json()["revisions"]["g1"]
    for _ in range(5):
        assert httpx.post(
            f"{base_url}/generate", json={"prompt": "x", "max_new_tokens": 2}, timeout=120
        ).is_success
    stats = httpx.get(f"{base_url}/stats").json()
    after = stats["revisions"]["g1"]
    assert after["requests"] - before["requests"] == 5
    assert after["tokens"]["completion"] > before["tokens"]["completion"]
    assert after["latency_seconds"]["p50"] is not None and after["healthy"] is True
    assert stats["weights"] == {"g1": 100} and stats["stable"] == "g1" and stats["router_replicas"] == 1
    metrics = httpx.get(f"{base_url}/metrics")
    families = {f.name: f for f in text_string_to_metric_families(metrics.text)}
    ok = [s for s in families["lmops_requests"].samples if s.labels == {"revision": "g1", "code": "200"}]
    assert ok and ok[0].value >= after["codes"]["200"]


def test_router_latency_p50(base_url: str) -> None:
    """A one-token call through Router and ModelServer; printed for the report, bounded loosely."""
    latencies = []
    with httpx.Client(timeout=60) as http:
        for _ in range(40):
            started = time.perf_counter()
            assert http.post(f"{base_url}/generate", json={"prompt": "a", "max_new_tokens": 1}).is_success
            latencies.append(time.perf_counter() - started)
    p50 = statistics.median(latencies)
    print(f"router one-token /generate p50: {p50 * 1000:.1f} ms")
    assert p50 < 2.0


def test_limits_keys_rate_size_after_reconfigure(
    base_url: str, tiny_generate_model_dir: Path, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("secret-1\n")
    routers = replica_actors("lm", "Router")
    redeploy(
        _document(
            tiny_generate_model_dir,
            api_keys_file=str(keys),
            rate_limit_per_minute=4,
            max_request_bytes=400,
            max_tokens_limit=8,
        )
    )
    try:
        assert replica_actors("lm", "Router") == routers  # limits arrive by reconfigure, not a restart
        anonymous = openai.OpenAI(base_url=f"{base_url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            anonymous.models.list()
        assert httpx.get(f"{base_url}/v1/models").status_code == 401
        good = {"Authorization": "Bearer secret-1"}
        big = httpx.post(f"{base_url}/generate", json={"prompt": "x" * 500}, headers=good)
        assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
        over = httpx.post(f"{base_url}/generate", json={"prompt": "x", "max_new_tokens": 9}, headers=good)
        assert over.status_code == 400 and over.json()["error"]["param"] == "max_new_tokens"
        ok = httpx.post(
            f"{base_url}/generate", json={"prompt": "x", "max_new_tokens": 1}, headers=good, timeout=60
        )
        assert ok.status_code == 200
        # Four calls per minute per key: the bucket is empty now (413, 400 and 200 each took a token, and so
        # does the next one); the fifth is refused with Retry-After.
        assert httpx.get(f"{base_url}/v1/models", headers=good).status_code == 200
        limited = httpx.get(f"{base_url}/v1/models", headers=good)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["error"]["type"] == "rate_limit_error"
        # The Secret changes on disk: the new key works without any redeploy.
        keys.write_text("secret-2\n")
        time.sleep(1.5)
        fresh = httpx.get(f"{base_url}/v1/models", headers={"Authorization": "Bearer secret-2"})
        assert fresh.status_code == 200
        assert httpx.get(f"{base_url}/v1/models", headers=good).status_code == 401
    finally:
        redeploy(_document(tiny_generate_model_dir))
    assert httpx.get(f"{base_url}/v1/models").status_code == 200
