"""The LanguageModel API (``lmops.io/v1alpha1``): the one hand-written schema; the CRD is generated from it.

Spec layout (camelCase on the wire, snake_case in Python)::

    spec:
      model:                 what to serve (a change makes a new revision)
        source               hf://org/name | s3://bucket/prefix | pvc://claim/path | file:///abs | builtin://tiny
        revision             pinned Hugging Face revision or version label
        task                 generate | classify | embed
        dtype                auto | float32 | float16 | bfloat16
        quantization         none | int8 (dynamic, CPU only)
        maxSequenceLength, trustRemoteCode
        labels               classify only (required there)
        engine               auto | vllm | transformers
        generation           strategy greedy|sample|beam, temperature, topK, topP, numBeams, maxNewTokens
      runtime:               where replicas run
        image, gpus, gpuResourceName, gpuType, nodeSelector, tolerations, cpu, memory
        head                 cpu, memory of the Ray head
      serving:               per-replica and per-request knobs
        maxBatchSize, batchWaitTimeoutMilliseconds, maxOngoingRequests, maxRequestBytes, maxTokens,
        apiKeySecretRef {name, key}, rateLimitPerMinute, stickySessionHeader
      autoscaling:           minReplicas (0 = scale to zero), maxReplicas, targetOngoingRequests,
                             upscaleDelaySeconds, downscaleDelaySeconds, scaleFromZeroTimeoutSeconds,
                             workerIdleTimeoutSeconds (Ray autoscaler: an idle worker pod's lifetime)
      rollout:               strategy Canary|Immediate, steps [{weight, pauseSeconds}],
                             analysis {maxErrorRate, maxP95LatencyMilliseconds, maxLatencyRatio, minRequests,
                             failureLimit, intervalSeconds, maxTimeToFirstTokenMilliseconds}, autoRollback,
                            revisionHistoryLimit,
                             qualityGate {configMapRef {name, key}, metric, maxDegradation}
      failover:              keepPreviousWarm, gcsFaultTolerance {redisAddress, redisPasswordSecretRef},
                             standby {enabled, zone, switchAfterSeconds}
    status:                  observedGeneration, phase, conditions, stableRevision, canaryRevision,
                             fallbackRevision, canaryWeight, traffic, revisions, endpoint, replicas,
                             rollout (step, checks, baseline counters, qualityGate result), lastAnalysis,
                             rayServiceName, clusterUpgrade

Descriptions become ``kubectl explain`` text, each field's change cost (``api.changes``) appended. Each
cross-field rule is written once (``api.rules``) and becomes both a CEL ``x-kubernetes-validations`` entry
and a pydantic check, so local mode (no API server) rejects what the API server rejects. Defaults here equal
the CRD's defaults: an object read from the API server and one parsed from a file in local mode mean the
same thing.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from lmops_operator.api import metadata as meta_rules
from lmops_operator.api.base import (
    MAX_NAME_LENGTH,
    NAME_NOT_DNS1035,
    NAME_PATTERN,
    NAME_TOO_LONG,
    ApiModel,
    object_default,
)
from lmops_operator.api.model_spec import (
    ModelSpec,
)
from lmops_operator.api.rollout_spec import (
    FailoverSpec,
    RolloutSpec,
)
from lmops_operator.api.rules import (
    Rule,
    cel_schema,
    check,
    field,
    has,
    if_then_else,
)
from lmops_operator.api.serving_spec import (
    AutoscalingSpec,
    RuntimeSpec,
    ServingSpec,
)
from lmops_operator.api.status import (
    LanguageModelStatus,
)

# ---------------------------------------------------------------------------------------------- spec


class LanguageModelSpec(ApiModel):
    """Desired state of a LanguageModel."""

    rules = (
        Rule(
            field("model.generation.maxNewTokens").le(field("serving.maxTokens")),
            "model.generation.maxNewTokens must not exceed serving.maxTokens",
            ".model.generation.maxNewTokens",
        ),
        Rule(
            field("autoscaling.targetOngoingRequests").le(field("serving.maxOngoingRequests").as_double()),
            "autoscaling.targetOngoingRequests must not exceed serving.maxOngoingRequests",
            ".autoscaling.targetOngoingRequests",
        ),
        Rule(
            field("model.quantization").ne("int8") | field("runtime.gpus").eq(0),
            "int8 dynamic quantization runs on CPU only: set runtime.gpus to 0",
            ".model.quantization",
        ),
        Rule(
            ~has(field("rollout.qualityGate"))
            | if_then_else(
                field("rollout.qualityGate.metric").eq("accuracy"),
                field("model.task").eq("classify"),
                field("model.task").eq("generate"),
            ),
            "qualityGate metric accuracy needs task classify; perplexity needs task generate",
            ".rollout.qualityGate.metric",
        ),
    )

    model: ModelSpec = Field(description="The model to serve; a change rolls out a new revision.")
    runtime: RuntimeSpec = Field(
        default_factory=RuntimeSpec,
        description="Image, GPUs and resources of the Ray pods.",
        json_schema_extra=object_default(RuntimeSpec),
    )
    serving: ServingSpec = Field(
        default_factory=ServingSpec,
        description="Batching, concurrency, request limits, API keys and rate limits.",
        json_schema_extra=object_default(ServingSpec),
    )
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec,
        description="Replica autoscaling, including scale to zero.",
        json_schema_extra=object_default(AutoscalingSpec),
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec,
        description="Canary or immediate rollout of new revisions, analysis and rollback.",
        json_schema_extra=object_default(RolloutSpec),
    )
    failover: FailoverSpec = Field(
        default_factory=FailoverSpec,
        description="Warm previous revision, GCS fault tolerance and a standby cluster.",
        json_schema_extra=object_default(FailoverSpec),
    )


# ---------------------------------------------------------------------------------------- the object


class ObjectMeta(BaseModel):
    """The metadata the operator reads; everything else is kept as is. What the API server checks of it
    (``api.metadata``) is checked here too, so local mode refuses what a cluster refuses."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: str = Field(min_length=1)
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    generate_name: str | None = None
    finalizers: list[str] | None = None
    owner_references: list[dict[str, Any]] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        _server_rule(meta_rules.dns1123_subdomain(name))
        return name

    @field_validator("generate_name")
    @classmethod
    def _generate_name(cls, prefix: str | None) -> str | None:
        _server_rule(meta_rules.generate_name(prefix) if prefix is not None else [])
        return prefix

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, namespace: str | None) -> str | None:
        _server_rule(meta_rules.dns1123_label(namespace) if namespace is not None else [])
        return namespace

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str] | None) -> dict[str, str] | None:
        _server_rule(meta_rules.check_labels(labels or {}))
        return labels

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, annotations: dict[str, str] | None) -> dict[str, str] | None:
        _server_rule(meta_rules.check_annotations(annotations or {}))
        return annotations

    @field_validator("finalizers")
    @classmethod
    def _finalizers(cls, finalizers: list[str] | None) -> list[str] | None:
        _server_rule(meta_rules.check_finalizers(finalizers or []))
        return finalizers

    @field_validator("owner_references")
    @classmethod
    def _owner_references(cls, refs: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        _server_rule(meta_rules.check_owner_references(refs or []))
        return refs


def _server_rule(problems: list[str]) -> None:
    """Refuse a metadata field the API server would refuse (``api.metadata``), naming every problem."""
    if problems:
        raise ValueError("; ".join(problems))


NAME_RULES = (
    Rule(field("metadata.name").size().le(MAX_NAME_LENGTH), NAME_TOO_LONG),
    Rule(field("metadata.name").matches(NAME_PATTERN), NAME_NOT_DNS1035),
)


class LanguageModel(ApiModel):
    """A language model served on Ray Serve by KubeRay: revisions, canary rollout, autoscaling, failover."""

    model_config = ConfigDict(json_schema_extra=cel_schema(NAME_RULES))

    api_version: Literal["lmops.io/v1alpha1"] = Field("lmops.io/v1alpha1", description="lmops.io/v1alpha1.")
    kind: Literal["LanguageModel"] = Field("LanguageModel", description="LanguageModel.")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: LanguageModelSpec = Field(description="Desired state.")
    status: LanguageModelStatus | None = Field(None, description="Observed state.")

    @field_validator("metadata")
    @classmethod
    def _short_name(cls, metadata: ObjectMeta) -> ObjectMeta:
        """NAME_RULES, checked here so that an error names metadata, as the API server's does."""
        check(NAME_RULES, SimpleNamespace(metadata=metadata))
        return metadata
