"""Revision pinning (``x-lmops-revision`` request header) and ``POST /v1/score`` on a real local Ray.

g1 (weight 100) and g2 (weight 0: a canary before any traffic) are the same tiny model under two names;
``broken`` (weight 0) is a real model whose forward pass fails; ``c1`` (weight 0) is a classifier, which
cannot score. Scores are checked against a direct torch computation on the tiny model.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmops_runtime.config import RouterConfig
from lmops_runtime.contract import REVISION_HEADER
from testkit.models import broken_generate_model
from tests.runtime import serve_configs as sc
from tests.runtime.router_support import deployed, revision_counts, stats

pytestmark = pytest.mark.slow

TEXTS = ["hello world", "a", "the quick brown fox jumps over the lazy dog", "xy"]


@pytest.fixture(scope="module")
def base(
    ray_local: None,
    tiny_generate_model_dir: Path,
    tiny_classify_model_dir: Path,
    tiny_classify_labels: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    broken = broken_generate_model(tiny_generate_model_dir, tmp_path_factory.mktemp("broken"))
    config = RouterConfig.model_validate(
        {"weights": {"g1": 100, "g2": 0, "broken": 0, "c1": 0}, "stable": "g1"}
    )
    document = sc.document(
        sc.router_app(config),
        sc.server_app("g1", tiny_generate_model_dir),
        sc.server_app("g2", tiny_generate_model_dir),
        sc.server_app("broken", broken),
        sc.server_app("c1", tiny_classify_model_dir, task="classify", labels=tiny_classify_labels),
    )
    with deployed(document) as url:
        yield url


def _requests(base: str) -> dict[str, int]:
    time.sleep(1.5)  # the Router replica pushes its counters within PUSH_INTERVAL_S
    return {rev: body["requests"] for rev, body in stats(base)["revisions"].items()}


async def test_pinned_calls_go_to_their_revision_and_are_counted_there(base: str) -> None:
    before = _requests(base)
    assert await revision_counts(base, 6, concurrency=3, headers={REVISION_HEADER: "g2"}) == {"g2": 6}
    assert await revision_counts(base, 4, concurrency=2, headers={REVISION_HEADER: "g1"}) == {"g1": 4}
    assert await revision_counts(base, 5, concurrency=2) == {"g1": 5}  # unpinned: weight 0 gets nothing
    after = _requests(base)
    assert after["g2"] - before["g2"] == 6
    assert after["g1"] - before["g1"] == 9


def test_a_pinned_stream_is_served_by_its_revision(base: str) -> None:
    body = {"model": "tiny", "prompt": "ab", "max_tokens": 2, "stream": True}
    with httpx.stream(
        "POST", f"{base}/v1/completions", json=body, headers={REVISION_HEADER: "g2"}, timeout=60
    ) as response:
        assert response.status_code == 200
        assert response.headers[REVISION_HEADER] == "g2"
        assert "data: [DONE]" in response.read().decode()


def test_an_unknown_revision_is_a_400_in_openai_format(base: str) -> None:
    before = _requests(base)
    for path, body in [("/generate", {"prompt": "a", "max_new_tokens": 1}), ("/v1/score", {"input": "ab"})]:
        response = httpx.post(f"{base}{path}", json=body, headers={REVISION_HEADER: "nope"}, timeout=60)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "unknown_revision" and error["type"] == "invalid_request_error"
        assert "'nope'" in error["message"] and "g2" in error["message"]
    after = _requests(base)
    assert after["g1"] == before["g1"] and after["g2"] == before["g2"]


def test_a_pinned_failure_is_not_retried_on_another_revision(base: str) -> None:
    before = _requests(base)
    response = httpx.post(
        f"{base}/generate",
        json={"prompt": "hello", "max_new_tokens": 1},
        headers={REVISION_HEADER: "broken"},
        timeout=60,
    )
    assert response.status_code == 500, response.text
    assert "Revision broken failed" in response.json()["error"]["message"]
    after = _requests(base)
    assert after["broken"] - before["broken"] == 1
    assert after["g1"] == before["g1"]  # an unpinned call would have been retried on the stable g1


def _torch_scores(model_dir: Path, texts: list[str]) -> list[tuple[float, int]]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)  # loads in eval mode
    out: list[tuple[float, int]] = []
    for text in texts:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        n = ids.shape[1] - 1
        if n < 1:
            out.append((0.0, 0))
            continue
        with torch.inference_mode():
            loss = float(model(input_ids=ids, labels=ids).loss)
        out.append((-loss * n, n))
    return out


@pytest.mark.parametrize("revision", ["g1", "g2"])
def test_score_matches_a_direct_torch_computation(
    base: str, revision: str, tiny_generate_model_dir: Path
) -> None:
    response = httpx.post(
        f"{base}/v1/score",
        json={"model": "tiny", "input": TEXTS},
        headers={REVISION_HEADER: revision},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.headers[REVISION_HEADER] == revision
    body = response.json()
    assert body["revision"] == revision and [d["index"] for d in body["data"]] == [0, 1, 2, 3]
    expected = _torch_scores(tiny_generate_model_dir, TEXTS)
    for item, (log_likelihood, tokens) in zip(body["data"], expected, strict=True):
        assert item["tokens"] == tokens
        assert item["log_likelihood"] == pytest.approx(log_likelihood, rel=1e-4, abs=1e-4)
    assert body["usage"]["prompt_tokens"] == sum(t for _, t in expected)
    assert expected[1] == (0.0, 0) and expected[0][0] < 0  # "a" is one token: nothing to predict


def test_score_refuses_bad_input_and_non_generate_revisions(base: str) -> None:
    cases = [
        ({"input": "ab"}, {REVISION_HEADER: "c1"}, "serves classify"),
        ({"input": []}, {}, "must not be empty"),
        ({"input": "ab", "model": "other"}, {}, "does not exist"),
        ({"input": "ab", "temperature": 1}, {}, "temperature"),
    ]
    for body, headers, words in cases:
        response = httpx.post(f"{base}/v1/score", json=body, headers=headers, timeout=60)
        assert response.status_code in (400, 404), response.text
        assert words in response.json()["error"]["message"], response.text
    unpinned = httpx.post(f"{base}/v1/score", json={"input": "abc"}, timeout=60)
    assert unpinned.status_code == 200 and unpinned.headers[REVISION_HEADER] == "g1"
