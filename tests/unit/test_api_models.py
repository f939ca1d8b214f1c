"""The pydantic API models: examples parse, invalid objects are rejected like the API server rejects them,
and specs survive spec -> dict -> model round trips."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from lmops_operator.api import (
    Condition,
    InvalidLanguageModel,
    LanguageModel,
    LanguageModelSpec,
    LanguageModelStatus,
    TrafficTarget,
    dump_spec,
    dump_status,
    load_language_model,
)
from tests.support.languagemodel_cases import INVALID_CASES, InvalidCase, base_object
from tests.support.languagemodel_strategies import valid_specs

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def test_examples_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"tiny.yaml", "gpt2-canary.yaml", "bert-classify.yaml", "embeddings.yaml"} <= names
    assert {"scale-to-zero.yaml", "failover.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_parse(path: Path) -> None:
    lm = load_language_model(yaml.safe_load(path.read_text()))
    assert lm.metadata.name
    assert lm.spec.model.source


def test_tiny_example_is_the_minimal_cpu_demo() -> None:
    lm = load_language_model(yaml.safe_load((REPO / "examples/tiny.yaml").read_text()))
    assert lm.spec.model.source == "builtin://tiny"
    assert lm.spec.model.task == "generate"
    assert lm.spec.runtime.gpus == 0
    assert lm.spec.autoscaling.min_replicas == 1


def test_defaults() -> None:
    spec = LanguageModelSpec.model_validate({"model": {"source": "builtin://tiny"}})
    assert spec.model.task == "generate" and not spec.model.trust_remote_code
    assert spec.runtime.gpus == 1 and spec.runtime.gpu_resource_name == "nvidia.com/gpu"
    assert [s.weight for s in spec.rollout.steps] == [10, 50]
    assert spec.rollout.auto_rollback and spec.rollout.revision_history_limit == 10
    assert spec.autoscaling.min_replicas <= spec.autoscaling.max_replicas


def test_snake_case_names_are_accepted_too() -> None:
    spec = LanguageModelSpec.model_validate(
        {"model": {"source": "builtin://tiny"}, "autoscaling": {"min_replicas": 0, "max_replicas": 2}}
    )
    assert spec.autoscaling.min_replicas == 0


def _components(path: str) -> list[str]:
    return [p for p in path.replace("[", ".[").split(".") if p]


@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda c: c.id)
def test_invalid_objects_are_rejected(case: InvalidCase) -> None:
    obj = case.object("bad")
    with pytest.raises(InvalidLanguageModel) as info:
        load_language_model(obj)
    errors = info.value.errors
    # pydantic names the field itself, or the object holding a cross-field rule: a prefix of the path.
    want = _components(case.path)
    assert any(_components(path) == want[: len(_components(path))] and path for path, _ in errors), errors
    if case.cel:
        assert any(case.message in message for _, message in errors), errors
    assert f"invalid LanguageModel {obj['metadata']['name']}: " in str(info.value)


def test_at_least_25_invalid_cases() -> None:
    assert len(INVALID_CASES) >= 25
    assert len({c.id for c in INVALID_CASES}) == len(INVALID_CASES)


def test_load_fills_api_version_and_kind_and_ignores_server_fields() -> None:
    obj: dict[str, Any] = {
        "metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 3, "managedFields": []},
        "spec": {"model": {"source": "builtin://tiny"}},
        "status": {"phase": "Ready", "kopf": {"progress": {}}},
    }
    lm = load_language_model(obj)
    assert lm.api_version == "lmops.io/v1alpha1" and lm.kind == "LanguageModel"
    assert lm.metadata.generation == 3 and lm.metadata.namespace == "ns"
    assert lm.status is not None and lm.status.phase == "Ready"


def test_load_accepts_read_only_mapping_views() -> None:
    """kopf passes Body/Spec views (Mappings, not dicts); parsing must not depend on dict."""
    from types import MappingProxyType

    def frozen(value: Any) -> Any:
        if isinstance(value, dict):
            return MappingProxyType({k: frozen(v) for k, v in value.items()})
        if isinstance(value, list):
            return tuple(frozen(v) for v in value)
        return value

    body = yaml.safe_load((REPO / "examples/gpt2-canary.yaml").read_text())
    assert load_language_model(frozen(body)) == load_language_model(body)


def test_load_rejects_wrong_kind() -> None:
    obj = {**base_object(), "kind": "Deployment"}
    with pytest.raises(InvalidLanguageModel, match="kind"):
        load_language_model(obj)


def test_dump_status_is_camel_case_without_unset_fields() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    status = LanguageModelStatus(
        observed_generation=2,
        phase="Progressing",
        stable_revision="a1",
        canary_revision="b2",
        canary_weight=10,
        traffic=[TrafficTarget(revision="a1", weight=90), TrafficTarget(revision="b2", weight=10)],
        conditions=[
            Condition(type="Progressing", status="True", reason="CanaryStep", last_transition_time=when)
        ],
    )
    assert dump_status(status) == {
        "observedGeneration": 2,
        "phase": "Progressing",
        "stableRevision": "a1",
        "canaryRevision": "b2",
        "canaryWeight": 10,
        "traffic": [{"revision": "a1", "weight": 90}, {"revision": "b2", "weight": 10}],
        "conditions": [
            {
                "type": "Progressing",
                "status": "True",
                "reason": "CanaryStep",
                "message": "",
                "lastTransitionTime": "2026-01-02T03:04:05Z",
            }
        ],
    }
    assert LanguageModelStatus.model_validate(dump_status(status)) == status


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_spec_round_trip(raw: dict[str, Any]) -> None:
    spec = LanguageModelSpec.model_validate(raw)
    dumped = dump_spec(spec)
    assert LanguageModelSpec.model_validate(dumped) == spec
    assert dump_spec(LanguageModelSpec.model_validate(dumped)) == dumped
    # Every field that was set comes back unchanged; the rest are defaults.
    _assert_subset(raw, dumped)
    lm = LanguageModel.model_validate({"metadata": {"name": "x"}, "spec": dumped})
    assert lm.spec == spec


def _assert_subset(given: Any, full: Any, path: str = "spec") -> None:
    if isinstance(given, dict):
        for key, value in given.items():
            assert key in full, f"{path}.{key} lost"
            _assert_subset(value, full[key], f"{path}.{key}")
    elif isinstance(given, list):
        assert len(given) == len(full), path
        for i, (a, b) in enumerate(zip(given, full, strict=True)):
            _assert_subset(a, b, f"{path}[{i}]")
    else:
        assert given == full, path
