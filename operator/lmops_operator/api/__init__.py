"""The LanguageModel API: pydantic models (the one source of the CRD) and the helpers the operator uses.

``load_language_model`` turns a kopf body (or a YAML document in local mode) into a validated
``LanguageModel``; ``dump_status`` turns a ``LanguageModelStatus`` into the camelCase dict to patch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from lmops_operator.api.base import (
    API_VERSION,
    CATEGORIES,
    GROUP,
    KIND,
    MAX_NAME_LENGTH,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    ConfigMapKeyRef,
    SecretKeyRef,
)
from lmops_operator.api.model_spec import GenerationSpec, ModelSpec
from lmops_operator.api.models import LanguageModel, LanguageModelSpec, ObjectMeta
from lmops_operator.api.rollout_spec import (
    AnalysisSpec,
    CanaryStep,
    FailoverSpec,
    GcsFaultToleranceSpec,
    QualityGateSpec,
    RolloutSpec,
    StandbySpec,
)
from lmops_operator.api.serving_spec import AutoscalingSpec, HeadSpec, RuntimeSpec, ServingSpec, Toleration
from lmops_operator.api.status import (
    AnalysisResult,
    Condition,
    LanguageModelStatus,
    RevisionReplicas,
    RevisionSummary,
    RolloutStatus,
    TrafficTarget,
)

__all__ = [
    "API_VERSION",
    "CATEGORIES",
    "GROUP",
    "KIND",
    "MAX_NAME_LENGTH",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "AnalysisResult",
    "AnalysisSpec",
    "AutoscalingSpec",
    "CanaryStep",
    "Condition",
    "ConfigMapKeyRef",
    "FailoverSpec",
    "GcsFaultToleranceSpec",
    "GenerationSpec",
    "HeadSpec",
    "InvalidLanguageModel",
    "LanguageModel",
    "LanguageModelSpec",
    "LanguageModelStatus",
    "ModelSpec",
    "ObjectMeta",
    "QualityGateSpec",
    "RevisionReplicas",
    "RevisionSummary",
    "RolloutSpec",
    "RolloutStatus",
    "RuntimeSpec",
    "SecretKeyRef",
    "ServingSpec",
    "StandbySpec",
    "Toleration",
    "TrafficTarget",
    "dump_spec",
    "dump_status",
    "load_language_model",
]


class InvalidLanguageModel(ValueError):
    """A LanguageModel the models reject; ``errors`` lists ``(field path, message)`` in camelCase."""

    def __init__(self, name: str, errors: list[tuple[str, str]]) -> None:
        self.name = name
        self.errors = errors
        details = "; ".join(f"{path}: {message}" if path else message for path, message in errors)
        super().__init__(f"invalid LanguageModel {name}: {details}")


def _field_path(loc: tuple[int | str, ...]) -> str:
    """``('spec', 'rollout', 'steps', 1, 'weight')`` -> ``spec.rollout.steps[1].weight``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _plain(value: Any) -> Any:
    """Deep copy into plain dicts and lists: kopf hands out read-only Mapping views, not dicts."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def load_language_model(obj: Mapping[str, Any]) -> LanguageModel:
    """Parse a whole object (a kopf body or a YAML document) into a validated ``LanguageModel``.

    Missing ``apiVersion``/``kind`` are filled in (local-mode files may omit them). Raises
    ``InvalidLanguageModel`` with one ``path: message`` entry per problem, paths in camelCase as in the YAML.
    """
    data = {
        key: _plain(obj[key]) for key in ("apiVersion", "kind", "metadata", "spec", "status") if key in obj
    }
    data.setdefault("apiVersion", API_VERSION)
    data.setdefault("kind", KIND)
    metadata = data.get("metadata")
    name = str(metadata.get("name", "?")) if isinstance(metadata, dict) else "?"
    try:
        return LanguageModel.model_validate(data)
    except ValidationError as exc:
        errors = [
            (_field_path(tuple(err["loc"])), err["msg"].removeprefix("Value error, "))
            for err in exc.errors(include_url=False)
        ]
        raise InvalidLanguageModel(name, errors) from None


def dump_status(status: LanguageModelStatus) -> dict[str, Any]:
    """The camelCase, JSON-ready dict of a status, unset fields left out (for a status patch)."""
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def dump_spec(spec: LanguageModelSpec) -> dict[str, Any]:
    """The camelCase, JSON-ready dict of a spec with every default filled in, unset optionals left out."""
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)
