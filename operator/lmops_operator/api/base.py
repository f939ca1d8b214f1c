"""What every LanguageModel API model shares: API names, value types, patterns and the base model.

The base model gives camelCase aliases, strict unknown-field handling and the cross-field ``rules``
(``api.rules``) that become both CEL validations and pydantic checks.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

from lmops_operator.api.rules import (
    Rule,
    check,
)

GROUP = "lmops.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LanguageModel"
PLURAL = "languagemodels"
SINGULAR = "languagemodel"
SHORT_NAMES = ("lm",)
CATEGORIES = ("lmops",)

# KubeRay names child RayClusters <rayservice>-<5 chars> and Services <rayservice>-head-svc (≤ 63); the
# operator also derives <name>-standby objects, so names stay well inside that.
MAX_NAME_LENGTH = 40
NAME_TOO_LONG = (
    f"metadata.name must be at most {MAX_NAME_LENGTH} characters (it prefixes the names of the RayService "
    "and its Services)"
)
# The name is the Service users call (``names.service_name``), and a Service name is an RFC 1035 label:
# stricter than the RFC 1123 subdomain the API server asks of a custom resource's name.
NAME_PATTERN = "^[a-z]([-a-z0-9]*[a-z0-9])?$"
NAME_NOT_DNS1035 = (
    "metadata.name must start with a lowercase letter and hold only lowercase letters, digits and '-', "
    "ending in a letter or digit (it names the model's Service, an RFC 1035 label)"
)

Task = Literal["generate", "classify", "embed"]
DType = Literal["auto", "float32", "float16", "bfloat16"]
Quantization = Literal["none", "int8"]
Strategy = Literal["greedy", "sample", "beam"]
Engine = Literal["auto", "vllm", "transformers"]
RolloutStrategy = Literal["Canary", "Immediate"]
QualityMetric = Literal["accuracy", "perplexity"]
Phase = Literal[
    "Pending", "Deploying", "Ready", "Progressing", "Paused", "Degraded", "Failed", "ScaledToZero"
]
ConditionType = Literal["Ready", "Progressing", "Degraded", "RolloutPaused"]
ConditionStatus = Literal["True", "False", "Unknown"]
Verdict = Literal["Pass", "Fail", "Inconclusive"]
Label = Annotated[str, StringConstraints(min_length=1, max_length=128)]

SOURCE_PATTERN = (
    r"^(hf://[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?"
    r"|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[!-~]*)?"
    r"|pvc://[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(/[!-~]*)?"
    r"|file:///[!-~]*"
    r"|builtin://tiny)$"
)
# Kubernetes resource.Quantity without a sign (requests are never negative).
QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
CONFIG_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
RESOURCE_NAME_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
HEADER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]*$"
HOST_PORT_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?:[0-9]{1,5}$"
REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


def object_default(model: type[BaseModel]) -> dict[str, Any]:
    """Schema extra for a defaulted sub-object: the model's own defaults, written out in full.

    Not ``{}``: the API server checks a default against the node's CEL rules as it stands, before the
    nested field defaults would apply, so ``{}`` would fail rules such as minReplicas <= maxReplicas.
    """
    return {"default": model().model_dump(mode="json", by_alias=True, exclude_none=True)}


def _rules_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """A model's ``rules`` as the CEL ``x-kubernetes-validations`` of its schema node."""
    rules: tuple[Rule, ...] = getattr(model, "rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [rule.to_cel() for rule in rules]


class ApiModel(BaseModel):
    """Base of every API model: camelCase aliases, unknown fields rejected (like fieldValidation=Strict).

    A model's cross-field ``rules`` (``api.rules``) become both its CEL validations in the CRD and the
    pydantic check below, so local mode rejects exactly what the API server rejects.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
        json_schema_extra=_rules_schema,
    )
    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Any:
        check(type(self).rules, self)
        return self


class SecretKeyRef(ApiModel):
    """A key in a Secret in the LanguageModel's namespace."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Name of the Secret."
    )
    key: str = Field(
        min_length=1, max_length=253, pattern=CONFIG_KEY_PATTERN, description="Key within the Secret."
    )


class ConfigMapKeyRef(ApiModel):
    """A key in a ConfigMap in the LanguageModel's namespace."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Name of the ConfigMap."
    )
    key: str = Field(
        min_length=1, max_length=253, pattern=CONFIG_KEY_PATTERN, description="Key within the ConfigMap."
    )
