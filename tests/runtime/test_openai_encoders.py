"""Embedding and classification through the Router on a real local Ray.

One LanguageModel serves one task, so the module deploys an embedding revision and a classifier revision
and moves the Router's weight from one to the other (a reconfigure) between the two halves.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from lmops_runtime.config import RouterConfig
from tests.runtime import serve_configs as sc
from tests.runtime.router_support import deployed, redeploy

pytestmark = pytest.mark.slow

MODEL = "tiny-enc"


class Encoders:
    def __init__(self, embed_dir: Path, classify_dir: Path, labels: list[str]) -> None:
        self.embed_dir, self.classify_dir, self.labels = embed_dir, classify_dir, labels
        self.base = ""

    def document(self, active: str) -> dict[str, Any]:
        config = RouterConfig(weights={active: 100}, stable=active)
        return sc.document(
            sc.router_app(config, model_name=MODEL),
            sc.server_app("emb", self.embed_dir, model_name=MODEL, task="embed"),
            sc.server_app("cls", self.classify_dir, model_name=MODEL, task="classify", labels=self.labels),
        )


@pytest.fixture(scope="module")
def encoders(
    ray_local: None,
    tiny_embed_model_dir: Path,
    tiny_classify_model_dir: Path,
    tiny_classify_labels: list[str],
) -> Iterator[Encoders]:
    state = Encoders(tiny_embed_model_dir, tiny_classify_model_dir, tiny_classify_labels)
    with deployed(state.document("emb")) as base:
        state.base = base
        yield state


def test_openai_embeddings_base64_and_float(encoders: Encoders) -> None:
    redeploy(encoders.document("emb"))
    client = openai.OpenAI(base_url=f"{encoders.base}/v1", api_key="unused", max_retries=0)
    default = client.embeddings.create(
        model=MODEL, input=["hello world", "bye"]
    )  # the client asks for base64
    as_float = client.embeddings.create(model=MODEL, input=["hello world", "bye"], encoding_format="float")
    assert [d.index for d in default.data] == [0, 1]
    assert len(default.data[0].embedding) == len(as_float.data[0].embedding) > 0
    assert default.data[0].embedding == pytest.approx(as_float.data[0].embedding, rel=1e-6)
    assert default.data[0].embedding != default.data[1].embedding
    assert default.usage.prompt_tokens > 0


def test_seed_embed_endpoint(encoders: Encoders) -> None:
    redeploy(encoders.document("emb"))
    body = httpx.post(f"{encoders.base}/embed", json={"texts": ["a", "b", "c"]}, timeout=60).json()
    assert body["revision"] == "emb" and len(body["embeddings"]) == 3
    assert all(len(v) == body["dimensions"] for v in body["embeddings"])
    empty = httpx.post(f"{encoders.base}/embed", json={"texts": []})
    assert empty.status_code == 400


def test_predict_returns_labels_and_scores(encoders: Encoders) -> None:
    redeploy(encoders.document("cls"))
    body = httpx.post(f"{encoders.base}/predict", json={"texts": ["good", "bad"]}, timeout=60).json()
    assert body["revision"] == "cls" and len(body["predictions"]) == 2
    for prediction in body["predictions"]:
        scores = prediction["scores"]
        assert sorted(s["label"] for s in scores) == sorted(encoders.labels)
        assert sum(s["score"] for s in scores) == pytest.approx(1.0, abs=1e-4)
        assert prediction["label"] == scores[0]["label"] and prediction["score"] == max(
            s["score"] for s in scores
        )


def test_wrong_task_is_a_client_error_not_a_retry(encoders: Encoders) -> None:
    redeploy(encoders.document("cls"))
    response = httpx.post(f"{encoders.base}/generate", json={"prompt": "x"}, timeout=60)
    assert response.status_code == 400 and "classify" in response.json()["error"]["message"]
    stats = httpx.get(f"{encoders.base}/stats").json()["revisions"]["cls"]
    assert stats["errors"] == 0 and stats["codes"]["400"] >= 1
