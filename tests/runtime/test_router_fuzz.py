"""Fuzzing the Router over real HTTP: malformed requests get a 4xx, never a 5xx, and it keeps serving.

1,200 requests drawn from a seeded generator (seed printed; LMOPS_FUZZ_SEED replays): valid templates of
every endpoint with fields removed, retyped, set out of range or to odd unicode; broken JSON, non-object
JSON, binary bodies, wrong content types, unknown paths and methods, huge and empty bodies, bad
Authorization headers. A request that happens to be valid may be served (200); nothing may get a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmops_runtime.config import RouterConfig
from tests.runtime import serve_configs as sc
from tests.runtime.router_support import deployed

pytestmark = pytest.mark.slow

REQUESTS = 1200
CONCURRENCY = 8
MAX_TOKENS = 4

TEMPLATES: list[tuple[str, dict[str, Any]]] = [
    ("/v1/completions", {"model": "tiny", "prompt": "hello", "max_tokens": 2}),
    ("/v1/completions", {"model": "tiny", "prompt": ["a", "b"], "max_tokens": 1, "stream": True}),
    ("/v1/completions", {"model": "tiny", "prompt": [[72, 105], [33]], "max_tokens": 1, "echo": True}),
    (
        "/v1/chat/completions",
        {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    ),
    ("/v1/embeddings", {"model": "tiny", "input": "text"}),
    ("/generate", {"prompt": "a", "max_new_tokens": 1, "strategy": "greedy"}),
    ("/predict", {"texts": ["good"]}),
    ("/embed", {"texts": ["x"]}),
]
ODD_VALUES: list[Any] = [
    None, True, -1, 0, 2**63, -(2**63), 2**64, 1e308, -1e-308, float("nan"), "", " ", "\u0000",
    "\ud7ff\ue000", "é" * 300, "x" * 5000, [], [None], [[[]]], {}, {"a": {"b": {"c": []}}}, "NaN", "-1", 3.5,
    list(range(50)), ["tiny"] * 20,
]  # fmt: skip
FIELDS = [
    "max_tokens", "temperature", "top_p", "top_k", "n", "stream", "stop", "seed", "frequency_penalty",
    "logit_bias", "user", "x" * 40,
]  # fmt: skip
PATHS = ["/", "/v1", "/v1/", "/v1/models/x", "/v2/completions", "/generate/", "/%00", "/stats/../x", "/.."]
METHODS = ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"]


def _mutate(rng: random.Random, body: dict[str, Any]) -> Any:
    body = json.loads(json.dumps(body))
    for _ in range(rng.randint(1, 3)):
        choice = rng.random()
        keys = list(body)
        if choice < 0.3 and keys:
            body.pop(rng.choice(keys))
        elif choice < 0.7 and keys:
            body[rng.choice(keys)] = rng.choice(ODD_VALUES)
        elif choice < 0.85:
            field = rng.choice(FIELDS)
            body[field] = rng.choice(ODD_VALUES)
        else:
            body["messages"] = rng.choice(
                [[], [{"role": "nobody", "content": "x"}], [{"content": 1}], [{"role": "user"}], "hi"]
            )
    return body


def _request(rng: random.Random) -> tuple[str, str, dict[str, Any]]:
    """(method, path, httpx keyword arguments) of one fuzzed request."""
    path, template = rng.choice(TEMPLATES)
    kind = rng.random()
    if kind < 0.45:
        text = json.dumps(_mutate(rng, template), allow_nan=True)
        return "POST", path, {"content": text, "headers": {"content-type": "application/json"}}
    if kind < 0.55:
        text = json.dumps(template)
        cut = text[: rng.randint(0, len(text) - 1)] + rng.choice(["", "}", "]]", "\\", '"'])
        return "POST", path, {"content": cut, "headers": {"content-type": "application/json"}}
    if kind < 0.62:
        value = rng.choice([[], [template], "text", 1, None, True])
        return "POST", path, {"content": json.dumps(value), "headers": {"content-type": "application/json"}}
    if kind < 0.7:
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
        ctype = rng.choice(
            ["application/octet-stream", "text/plain", "application/json", "multipart/form-data"]
        )
        return "POST", path, {"content": data, "headers": {"content-type": ctype}}
    if kind < 0.78:
        return rng.choice(METHODS), rng.choice([path, *PATHS]), {}
    if kind < 0.84:
        return "POST", rng.choice(PATHS), {"json": template}
    if kind < 0.9:
        size = rng.choice([2_000_000, 1_000_001])  # above the Router's maxRequestBytes (1 MB)
        return (
            "POST",
            path,
            {"content": b"{" + b" " * size + b"}", "headers": {"content-type": "application/json"}},
        )
    if kind < 0.95:
        auth = rng.choice(
            ["Bearer", "Bearer  x", "Basic abc", "Bearer " + "k" * 5000, "\u00ffkey", "Bearer \u00e9"]
        )
        headers = {"authorization": auth.encode("latin-1"), "content-type": "application/json"}
        text = json.dumps(_mutate(rng, template), allow_nan=True)
        return "POST", path, {"content": text, "headers": headers}  # raw bytes: httpx refuses non-ASCII text
    return "POST", path, {"json": template, "params": {"q": "\u0000" * rng.randint(1, 30)}}


@pytest.fixture(scope="module")
def router(ray_local: None, tiny_generate_model_dir: Path) -> Iterator[str]:
    config = RouterConfig(weights={"g1": 100}, stable="g1", max_tokens_limit=MAX_TOKENS)
    document = sc.document(sc.router_app(config), sc.server_app("g1", tiny_generate_model_dir))
    with deployed(document) as base:
        yield base


async def test_fuzzed_requests_get_4xx_never_5xx_and_the_router_keeps_serving(router: str) -> None:
    seed = int(os.environ.get("LMOPS_FUZZ_SEED", random.randrange(1 << 30)))
    sys.stderr.write(f"\nrouter fuzz seed {seed} (LMOPS_FUZZ_SEED to replay)\n")
    rng = random.Random(seed)
    requests = [_request(rng) for _ in range(REQUESTS)]
    codes: Counter[int] = Counter()
    server_errors: list[str] = []
    queue: asyncio.Queue[tuple[str, str, dict[str, Any]]] = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            method, path, kwargs = queue.get_nowait()
            response = await client.request(method, f"{router}{path}", **kwargs)
            await response.aread()
            codes[response.status_code] += 1
            if response.status_code >= 500:
                server_errors.append(
                    f"{method} {path} {kwargs!r:.300} -> {response.status_code} {response.text[:300]}"
                )

    async with httpx.AsyncClient(timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
        ok = await client.post(
            f"{router}/v1/completions", json={"model": "tiny", "prompt": "hi", "max_tokens": 2}
        )
    sys.stderr.write(f"router fuzz status codes: {dict(sorted(codes.items()))}\n")
    assert sum(codes.values()) == REQUESTS >= 1000
    assert server_errors == [], server_errors[:5]
    assert sum(n for code, n in codes.items() if 400 <= code < 500) > REQUESTS // 2
    assert ok.status_code == 200, ok.text
