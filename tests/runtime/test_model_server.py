"""ModelServer: the plain implementation directly, and the Serve deployment through a DeploymentHandle."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import torch

from lmops_runtime.config import ModelSpec, ServerArgs, server_app_name
from lmops_runtime.loading import ModelLoadError
from lmops_runtime.model_server import ModelServer, ModelServerImpl
from lmops_runtime.protocol import (
    ClassifyRequest,
    EmbedRequest,
    GenerateRequest,
    InvalidRequestError,
)


def server_args(path: Path, task: str, revision: str = "r1") -> ServerArgs:
    return ServerArgs(
        model_name="tiny",
        revision=revision,
        model=ModelSpec(source=f"file://{path}", task=task, max_sequence_length=128),  # type: ignore[arg-type]
    )


@pytest.fixture
async def generate_server(tiny_generate_model_dir: Path) -> AsyncIterator[ModelServerImpl]:
    server = ModelServerImpl(server_args(tiny_generate_model_dir, "generate"))
    yield server
    server.close()


async def test_health_check_runs_the_model_and_fails_when_broken(generate_server: ModelServerImpl) -> None:
    await generate_server.check_health()
    with torch.no_grad():
        generate_server.loaded.model.lm_head.weight.fill_(float("nan"))
    with pytest.raises(RuntimeError, match="non-finite"):
        await generate_server.check_health()


async def test_health_check_fails_once_the_batcher_is_closed(generate_server: ModelServerImpl) -> None:
    """A thread that died on an error restarts (tests/runtime/test_engine_generate.py); a closed one can't."""
    assert generate_server.generator is not None
    generate_server.generator.close()
    with pytest.raises(RuntimeError, match="manager is closed"):
        await generate_server.check_health()


async def test_tasks_not_loaded_are_invalid_requests(generate_server: ModelServerImpl) -> None:
    with pytest.raises(InvalidRequestError, match="serves generate, not embed"):
        await generate_server.embed(EmbedRequest(texts=["x"]))
    with pytest.raises(InvalidRequestError, match="serves generate, not classify"):
        await generate_server.classify({"texts": ["x"]})  # type: ignore[arg-type]
    info = generate_server.info()
    assert (info.model_name, info.revision, info.task, info.max_sequence_length) == (
        "tiny",
        "r1",
        "generate",
        128,
    )
    assert (info.device, info.dtype) == ("cpu", "float32")


async def test_concurrent_encoder_requests_are_batched_and_split_back(tiny_embed_model_dir: Path) -> None:
    server = ModelServerImpl(server_args(tiny_embed_model_dir, "embed"))
    try:
        texts = [["a"], ["bb", "ccc"], ["dddd"]]
        results = await asyncio.gather(*(server.embed(EmbedRequest(texts=t)) for t in texts))
        assert [len(r.embeddings) for r in results] == [1, 2, 1]
        assert [r.prompt_tokens for r in results] == [3, 4 + 5, 6]
        alone = await server.embed(EmbedRequest(texts=["bb"]))
        assert alone.embeddings[0] == pytest.approx(results[1].embeddings[0], abs=1e-5)
        with pytest.raises(InvalidRequestError):
            await server.embed(EmbedRequest(texts=["x" * 200]))
        await server.check_health()
    finally:
        server.close()


def test_load_failure_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        ModelServerImpl(server_args(tmp_path / "missing", "generate"))


@pytest.mark.slow
def test_serve_deployment_through_handles(
    ray_local: None,
    tiny_generate_model_dir: Path,
    tiny_classify_model_dir: Path,
    tiny_embed_model_dir: Path,
    tiny_classify_labels: list[str],
) -> None:
    from ray import serve
    from ray.serve.api import RunTarget

    models = {
        "generate": tiny_generate_model_dir,
        "classify": tiny_classify_model_dir,
        "embed": tiny_embed_model_dir,
    }
    targets = [
        RunTarget(
            ModelServer.options(ray_actor_options={"num_cpus": 0}).bind(server_args(path, task, task)),
            name=server_app_name(task),
            route_prefix=None,
        )
        for task, path in models.items()
    ]
    # Deployed together, so the three replicas load their models in parallel.
    handles = dict(zip(models, serve.run_many(targets), strict=True))

    generate = handles["generate"]
    info = generate.info.remote().result()
    assert (info.task, info.revision, info.device) == ("generate", "generate", "cpu")
    request = GenerateRequest(prompt="hello", max_new_tokens=12)
    result = generate.generate.remote(request).result()
    assert result.completion_tokens == 12 and result.finish_reason == "length"
    chunks = list(generate.options(stream=True).generate_stream.remote(request))
    assert "".join(c.text for c in chunks) == result.text
    assert chunks[-1].completion_tokens == 12
    with pytest.raises(InvalidRequestError, match="maximum sequence length"):
        generate.generate.remote(GenerateRequest(prompt="x" * 100, max_new_tokens=100)).result()
    with pytest.raises(InvalidRequestError, match="not embed"):
        generate.embed.remote(EmbedRequest(texts=["x"])).result()
    # Still serving after the bad requests.
    assert generate.generate.remote(request).result().text == result.text

    classified = handles["classify"].classify.remote(ClassifyRequest(texts=["good", "bad"])).result()
    assert len(classified.predictions) == 2
    assert {s.label for s in classified.predictions[0]} == set(tiny_classify_labels)
    assert math.isclose(sum(s.score for s in classified.predictions[0]), 1.0, rel_tol=1e-5)

    embedded = handles["embed"].embed.remote(EmbedRequest(texts=["same", "same"])).result()
    assert embedded.embeddings[0] == embedded.embeddings[1]
    assert math.isclose(sum(x * x for x in embedded.embeddings[0]), 1.0, rel_tol=1e-5)

    for task in handles:
        serve.delete(server_app_name(task))


@pytest.mark.slow
def test_serve_reports_a_load_failure(ray_local: None, tmp_path: Path) -> None:
    from ray import serve

    # One constructor attempt: the error is permanent, and Serve's default retries only cost time here.
    app = ModelServer.options(ray_actor_options={"num_cpus": 0}, max_constructor_retry_count=1).bind(
        server_args(tmp_path / "missing", "generate", "broken")
    )
    with pytest.raises(RuntimeError, match="failed"):
        serve.run(app, name=server_app_name("broken"), route_prefix=None)
    status = serve.status().applications[server_app_name("broken")]
    assert status.status == "DEPLOY_FAILED"
    # The deployment's status carries the load error, which the operator surfaces.
    assert "does not exist" in status.deployments["ModelServer"].message
    serve.delete(server_app_name("broken"))
