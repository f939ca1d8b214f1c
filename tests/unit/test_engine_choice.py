"""spec.model.engine: validation, revisions, the image and the serve config's tensor-parallel placement."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from lmops_operator.api import InvalidLanguageModel
from lmops_operator.planning.plan import Observed, plan
from lmops_operator.planning.revision import revision_data, revision_name
from lmops_operator.settings import Settings
from tests.support.languagemodel_cases import DELETE, merge
from tests.unit.planner_helpers import SETTINGS, T0, by_kind, example, model


def _ray(body: dict[str, Any], settings: Settings = SETTINGS) -> dict[str, Any]:
    result = plan(model(body), Observed(now=T0), settings)
    ray: dict[str, Any] = by_kind(result, "RayService")[0]
    return ray


def _server_deployment(ray: dict[str, Any]) -> dict[str, Any]:
    apps = yaml.safe_load(ray["spec"]["serveConfigV2"])["applications"]
    (server,) = [app for app in apps if app["name"].startswith("rev-")]
    deployment: dict[str, Any] = server["deployments"][0]
    return deployment


def test_engine_auto_keeps_the_revision_of_a_spec_without_the_field() -> None:
    """Revisions stored before spec.model.engine existed keep their names: auto is not part of the hash."""
    lm = model(example("tiny"))
    assert lm.spec.model.engine == "auto"
    assert "engine" not in revision_data(lm.spec)["model"]
    for engine in ("vllm", "transformers"):
        changed = model(merge(example("tiny"), {"spec": {"model": {"engine": engine}}}))
        assert revision_data(changed.spec)["model"]["engine"] == engine
        assert revision_name(changed.spec) != revision_name(lm.spec)


@pytest.mark.parametrize(
    "change",
    [
        {"model": {"engine": "vllm", "task": "embed"}},
        {"model": {"engine": "vllm", "quantization": "int8"}},
    ],
)
def test_engine_vllm_serves_generate_without_int8(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidLanguageModel, match="engine vllm serves task generate"):
        model(merge(example("tiny"), {"spec": change}))


def test_the_operator_picks_the_image_from_the_engine() -> None:
    settings = Settings(
        default_runtime_image="rt:1",
        default_vllm_runtime_image="rt:1-vllm",
        default_vllm_cpu_runtime_image="rt:1-vllm-cpu",
    )

    def image(change: dict[str, Any]) -> str:
        ray = _ray(merge(example("gpt2-canary"), {"spec": change}), settings)
        worker = ray["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
        return str(worker["image"])

    # gpt2-canary asks for GPUs: the transformers engines get the CUDA variant, vLLM its own.
    assert image({}) == "rt:1-gpu"
    assert image({"model": {"engine": "transformers"}}) == "rt:1-gpu"
    assert image({"runtime": {"gpus": 0, "gpuType": DELETE}}) == "rt:1"
    assert image({"model": {"engine": "vllm"}}) == "rt:1-vllm"
    assert image({"model": {"engine": "vllm"}, "runtime": {"gpus": 0, "gpuType": DELETE}}) == "rt:1-vllm-cpu"
    assert image({"model": {"engine": "vllm"}, "runtime": {"image": "mine:2"}}) == "mine:2"
    derived = Settings(default_runtime_image="rt:2")
    assert (
        derived.default_image("vllm", 1) == "rt:2-vllm"
        and derived.default_image("vllm", 0) == "rt:2-vllm-cpu"
    )
    assert Settings.from_env({"LMOPS_DEFAULT_VLLM_RUNTIME_IMAGE": "v:1"}).default_image("vllm", 2) == "v:1"


def test_tensor_parallel_vllm_replica_gets_one_gpu_bundle_per_gpu_on_one_node() -> None:
    body = merge(example("gpt2-canary"), {"spec": {"model": {"engine": "vllm"}, "runtime": {"gpus": 4}}})
    deployment = _server_deployment(_ray(body))
    assert deployment["ray_actor_options"]["num_gpus"] == 0
    bundles = deployment["placement_group_bundles"]
    assert len(bundles) == 4 and all(bundle["GPU"] == 1 for bundle in bundles)
    assert bundles[0]["CPU"] == deployment["ray_actor_options"]["num_cpus"]
    assert deployment["placement_group_strategy"] == "STRICT_PACK"
    apps = yaml.safe_load(_ray(body)["spec"]["serveConfigV2"])["applications"]
    server = next(app for app in apps if app["name"].startswith("rev-"))
    assert server["args"]["tensor_parallel_size"] == 4
    # The worker pod holds all four GPUs: the placement group fits one pod.
    ray = _ray(body)
    worker = ray["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "4"


@pytest.mark.parametrize(
    "change", [{"runtime": {"gpus": 4}}, {"model": {"engine": "vllm"}, "runtime": {"gpus": 1}}]
)
def test_no_placement_group_without_tensor_parallel(change: dict[str, Any]) -> None:
    deployment = _server_deployment(_ray(merge(example("gpt2-canary"), {"spec": change})))
    assert "placement_group_bundles" not in deployment
    assert deployment["ray_actor_options"]["num_gpus"] == change["runtime"]["gpus"]
