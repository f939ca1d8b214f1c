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
                             upscaleDelaySeconds, downscaleDelaySeconds, scaleFromZeroTimeoutSeconds
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

Descriptions become ``kubectl explain`` text. Cross-field rules are CEL ``x-kubernetes-validations`` attached
through ``json_schema_extra`` (see ``_cel``) and mirrored by pydantic validators, so local mode (no API
server) rejects what the API server rejects. Defaults here equal the CRD's defaults: an object read from the
API server and one parsed from a file in local mode mean the same thing.
"""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.alias_generators import to_camel

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


def _cel(*rules: tuple[str, str, str | None]) -> dict[str, Any]:
    """CEL rules as ``json_schema_extra``: (rule, message, fieldPath or None)."""
    out: list[dict[str, str]] = []
    for rule, message, path in rules:
        item = {"rule": rule, "message": message}
        if path is not None:
            item["fieldPath"] = path
        out.append(item)
    return {"x-kubernetes-validations": out}


def _object_default(model: type[BaseModel]) -> dict[str, Any]:
    """Schema extra for a defaulted sub-object: the model's own defaults, written out in full.

    Not ``{}``: the API server checks a default against the node's CEL rules as it stands, before the
    nested field defaults would apply, so ``{}`` would fail rules such as minReplicas <= maxReplicas.
    """
    return {"default": model().model_dump(mode="json", by_alias=True, exclude_none=True)}


class _ApiModel(BaseModel):
    """Base of every API model: camelCase aliases, unknown fields rejected (like fieldValidation=Strict)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
    )


class SecretKeyRef(_ApiModel):
    """A key in a Secret in the LanguageModel's namespace."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Name of the Secret."
    )
    key: str = Field(
        min_length=1, max_length=253, pattern=CONFIG_KEY_PATTERN, description="Key within the Secret."
    )


class ConfigMapKeyRef(_ApiModel):
    """A key in a ConfigMap in the LanguageModel's namespace."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Name of the ConfigMap."
    )
    key: str = Field(
        min_length=1, max_length=253, pattern=CONFIG_KEY_PATTERN, description="Key within the ConfigMap."
    )


# --------------------------------------------------------------------------------------------- model


class GenerationSpec(_ApiModel):
    """Generation defaults for task generate; a request's own parameters override them."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "!has(self.numBeams) || self.strategy == 'beam'",
                "numBeams is only allowed with strategy beam",
                ".numBeams",
            ),
            (
                "!has(self.topK) || self.strategy == 'sample'",
                "topK is only allowed with strategy sample",
                ".topK",
            ),
            (
                "!has(self.topP) || self.strategy == 'sample'",
                "topP is only allowed with strategy sample",
                ".topP",
            ),
        )
    )

    strategy: Strategy = Field(
        "greedy",
        description="Decoding strategy: greedy (argmax), sample (temperature, top-k, nucleus) or beam "
        "search.",
    )
    temperature: float = Field(
        1.0, gt=0, le=10, description="Softmax temperature for strategy sample; lower is more deterministic."
    )
    top_k: int | None = Field(
        None, ge=1, le=10000, description="Sample only from the k most likely tokens (strategy sample)."
    )
    top_p: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Nucleus sampling: sample from the smallest token set whose probability reaches topP "
        "(strategy sample).",
    )
    num_beams: int | None = Field(None, ge=2, le=16, description="Beams for strategy beam; 4 when unset.")
    max_new_tokens: int = Field(
        128,
        ge=1,
        le=32768,
        description="Tokens generated when a request does not say; must not exceed serving.maxTokens.",
    )

    @model_validator(mode="after")
    def _strategy_knobs(self) -> GenerationSpec:
        if self.num_beams is not None and self.strategy != "beam":
            raise ValueError("numBeams is only allowed with strategy beam")
        if self.top_k is not None and self.strategy != "sample":
            raise ValueError("topK is only allowed with strategy sample")
        if self.top_p is not None and self.strategy != "sample":
            raise ValueError("topP is only allowed with strategy sample")
        return self


class ModelSpec(_ApiModel):
    """What to serve. Any change here makes a new revision, rolled out per spec.rollout."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "self.task != 'classify' || has(self.labels)",
                "labels are required when task is classify",
                ".labels",
            ),
            (
                "self.task == 'classify' || !has(self.labels)",
                "labels are only allowed when task is classify",
                ".labels",
            ),
            (
                "self.quantization != 'int8' || self.dtype in ['auto', 'float32']",
                "int8 dynamic quantization needs dtype auto or float32",
                ".quantization",
            ),
            (
                "self.engine != 'vllm' || (self.task == 'generate' && self.quantization == 'none')",
                "engine vllm serves task generate without int8 quantization",
                ".engine",
            ),
        )
    )

    source: str = Field(
        max_length=512,
        pattern=SOURCE_PATTERN,
        description="Where the weights come from: hf://org/name (Hugging Face Hub), s3://bucket/prefix, "
        "pvc://claim/path (a PersistentVolumeClaim mounted read-only), file:///absolute/path (on the node "
        "or in the image), or builtin://tiny (a tiny random-weight model for demos and tests).",
    )
    revision: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
        description="Pinned revision of the weights: a Hugging Face commit, tag or branch, or a version "
        "label for other sources. Changing it rolls out a new revision.",
    )
    task: Task = Field(
        "generate",
        description="generate: text generation (/v1/completions, /v1/chat/completions); classify: sequence "
        "classification (/predict); embed: sentence embeddings (/v1/embeddings, /embed).",
    )
    dtype: DType = Field(
        "auto", description="Weight dtype; auto picks bfloat16 on GPUs that support it and float32 on CPU."
    )
    quantization: Quantization = Field(
        "none",
        description="none, or int8: dynamic int8 quantization of linear layers (CPU replicas only).",
    )
    max_sequence_length: int | None = Field(
        None,
        ge=1,
        le=1048576,
        description="Longest prompt plus generated tokens accepted; defaults to the model's own limit.",
    )
    trust_remote_code: bool = Field(
        False,
        description="Run Python code shipped with the model. Off unless set; the operator can forbid it "
        "cluster-wide.",
    )
    labels: list[Label] | None = Field(
        None,
        min_length=2,
        max_length=1000,
        description="Class names in the order of the classifier's outputs; required for task classify "
        "and only allowed there.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    generation: GenerationSpec = Field(
        default_factory=GenerationSpec,
        description="Generation defaults (task generate).",
        json_schema_extra=_object_default(GenerationSpec),
    )

    engine: Engine = Field(
        "auto",
        description="Inference engine. vllm: vLLM (paged KV cache, continuous batching, prefix caching, "
        "tensor parallel over runtime.gpus), task generate only, on the vLLM runtime image; transformers: "
        "the portable engine for every task; auto: vLLM for generate where the runtime image has it, else "
        "transformers. Changing it rolls out a new revision.",
    )

    @model_validator(mode="after")
    def _task_rules(self) -> ModelSpec:
        if self.task == "classify" and self.labels is None:
            raise ValueError("labels are required when task is classify")
        if self.task != "classify" and self.labels is not None:
            raise ValueError("labels are only allowed when task is classify")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        if self.quantization == "int8" and self.dtype not in ("auto", "float32"):
            raise ValueError("int8 dynamic quantization needs dtype auto or float32")
        if self.engine == "vllm" and (self.task != "generate" or self.quantization != "none"):
            raise ValueError("engine vllm serves task generate without int8 quantization")
        return self


# ------------------------------------------------------------------------------------------- runtime


class Toleration(_ApiModel):
    """A core/v1 Toleration, copied onto the Ray worker pods."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "!has(self.operator) || self.operator != 'Exists' || !has(self.value)",
                "value must be empty when operator is Exists",
                ".value",
            ),
            (
                "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                "tolerationSeconds is only allowed with effect NoExecute",
                ".tolerationSeconds",
            ),
        )
    )

    key: str | None = Field(
        None, max_length=317, description="Taint key to match; empty with operator Exists matches all."
    )
    operator: Literal["Exists", "Equal"] | None = Field(None, description="Exists or Equal (the default).")
    value: str | None = Field(None, max_length=63, description="Taint value to match with operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        None, ge=0, description="How long a NoExecute taint is tolerated before eviction."
    )

    @model_validator(mode="after")
    def _operator_rules(self) -> Toleration:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("value must be empty when operator is Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds is only allowed with effect NoExecute")
        return self


class HeadSpec(_ApiModel):
    """Resources of the Ray head pod (GCS, dashboard, Serve controller; no model replicas)."""

    cpu: str = Field("1", pattern=QUANTITY_PATTERN, description="CPU request and limit (a quantity).")
    memory: str = Field("2Gi", pattern=QUANTITY_PATTERN, description="Memory request and limit (a quantity).")


class RuntimeSpec(_ApiModel):
    """Where and on what model replicas run: one Ray worker pod per replica."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            ("!has(self.gpuType) || self.gpus > 0", "gpuType needs gpus > 0", ".gpuType"),
        )
    )

    image: str | None = Field(
        None,
        min_length=1,
        max_length=512,
        description="Runtime image for the Ray head and workers; the operator's default image when unset. "
        "Changing it needs a new Ray cluster (a KubeRay cluster upgrade), reported in status.clusterUpgrade.",
    )
    gpus: int = Field(1, ge=0, le=16, description="GPUs per replica; 0 runs the replica on CPU.")
    gpu_resource_name: str = Field(
        "nvidia.com/gpu",
        max_length=253,
        pattern=RESOURCE_NAME_PATTERN,
        description="Extended resource name that GPUs are requested under.",
    )
    gpu_type: str | None = Field(
        None,
        min_length=1,
        max_length=63,
        description="GPU model to schedule on, matched as the node label nvidia.com/gpu.product "
        "(for example NVIDIA-H100-80GB-HBM3).",
    )
    node_selector: dict[str, str] | None = Field(
        None, description="Extra node labels the worker pods must match."
    )
    tolerations: list[Toleration] | None = Field(
        None,
        max_length=32,
        description="Tolerations of the worker pods (for example for tainted GPU nodes).",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    cpu: str = Field(
        "2", pattern=QUANTITY_PATTERN, description="CPU request and limit per replica (a quantity)."
    )
    memory: str = Field(
        "8Gi", pattern=QUANTITY_PATTERN, description="Memory request and limit per replica (a quantity)."
    )
    head: HeadSpec = Field(
        default_factory=HeadSpec,
        description="Ray head pod resources.",
        json_schema_extra=_object_default(HeadSpec),
    )

    @model_validator(mode="after")
    def _gpu_type_needs_gpus(self) -> RuntimeSpec:
        if self.gpu_type is not None and self.gpus == 0:
            raise ValueError("gpuType needs gpus > 0")
        return self


# ------------------------------------------------------------------------------------------- serving


class ServingSpec(_ApiModel):
    """Request handling: batching, concurrency, limits, authentication and rate limits."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "!has(self.rateLimitPerMinute) || has(self.apiKeySecretRef)",
                "rateLimitPerMinute counts requests per API key and needs apiKeySecretRef",
                ".rateLimitPerMinute",
            ),
        )
    )

    max_batch_size: int = Field(
        8, ge=1, le=256, description="Most requests a replica runs in one forward pass (continuous batching)."
    )
    batch_wait_timeout_milliseconds: int = Field(
        10, ge=0, le=10000, description="How long a replica waits to fill a batch before running it."
    )
    max_ongoing_requests: int = Field(
        32, ge=1, le=10000, description="Requests a replica accepts at once; more wait in the Router."
    )
    max_request_bytes: int = Field(
        1000000, ge=1024, le=104857600, description="Largest request body accepted, in bytes (413 above)."
    )
    max_tokens: int = Field(
        4096, ge=1, le=1048576, description="Largest max_tokens a request may ask for (400 above)."
    )
    api_key_secret_ref: SecretKeyRef | None = Field(
        None,
        description="Secret key holding the accepted API keys, one per line; requests must send one as "
        "'Authorization: Bearer <key>'. Unset: no authentication.",
    )
    rate_limit_per_minute: int | None = Field(
        None, ge=1, le=1000000, description="Requests per minute allowed per API key (429 above)."
    )
    sticky_session_header: str | None = Field(
        None,
        max_length=64,
        pattern=HEADER_PATTERN,
        description="Request header whose value pins a client to one revision during a canary.",
    )
    stream_interval_milliseconds: int = Field(
        50,
        ge=0,
        le=1000,
        description="Streamed tokens produced within this window go out as one chunk, so a fast model does "
        "not pay a Ray Serve message per token; the first token is never held. 0 sends every token alone.",
    )

    @model_validator(mode="after")
    def _rate_limit_needs_keys(self) -> ServingSpec:
        if self.rate_limit_per_minute is not None and self.api_key_secret_ref is None:
            raise ValueError("rateLimitPerMinute counts requests per API key and needs apiKeySecretRef")
        return self


# --------------------------------------------------------------------------------------- autoscaling


class AutoscalingSpec(_ApiModel):
    """Replica autoscaling by Ray Serve; the Ray autoscaler adds and removes worker pods to match."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "self.minReplicas <= self.maxReplicas",
                "minReplicas must not exceed maxReplicas",
                ".minReplicas",
            ),
        )
    )

    min_replicas: int = Field(
        1, ge=0, le=1000, description="Fewest replicas per revision; 0 scales to zero when idle."
    )
    max_replicas: int = Field(1, ge=1, le=1000, description="Most replicas per revision.")
    target_ongoing_requests: float = Field(
        4.0, gt=0, le=10000, description="Ongoing requests per replica that autoscaling aims for."
    )
    upscale_delay_seconds: int = Field(
        30, ge=0, le=3600, description="How long load must stay high before adding replicas."
    )
    downscale_delay_seconds: int = Field(
        600, ge=0, le=86400, description="How long load must stay low before removing replicas."
    )
    scale_from_zero_timeout_seconds: int = Field(
        120,
        ge=1,
        le=3600,
        description="How long the Router holds a request while a revision scaled to zero starts (503 after).",
    )

    @model_validator(mode="after")
    def _min_le_max(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must not exceed maxReplicas")
        return self


# ------------------------------------------------------------------------------------------- rollout


class CanaryStep(_ApiModel):
    """One canary step: send weight percent of traffic to the new revision, then analyse for a while."""

    weight: int = Field(ge=1, le=100, description="Percent of traffic on the canary during this step.")
    pause_seconds: int = Field(
        60, ge=0, le=86400, description="How long the step lasts before the next analysis decides."
    )


def _default_steps() -> list[CanaryStep]:
    return [CanaryStep(weight=10, pause_seconds=60), CanaryStep(weight=50, pause_seconds=60)]


class AnalysisSpec(_ApiModel):
    """Thresholds the canary's live metrics (from the Router) must meet at every analysis."""

    max_error_rate: float = Field(
        0.05, ge=0, le=1, description="Highest fraction of canary requests that may fail (5xx)."
    )
    max_p95_latency_milliseconds: int | None = Field(
        None, ge=1, le=3600000, description="Highest p95 canary latency; unset: latency is not checked."
    )
    min_requests: int = Field(
        20,
        ge=0,
        le=1000000,
        description="Canary requests needed before an analysis can pass; fewer is inconclusive.",
    )
    failure_limit: int = Field(
        2, ge=1, le=100, description="Failed analyses after which the rollout is aborted."
    )
    interval_seconds: int = Field(30, ge=5, le=3600, description="Time between analyses.")
    max_latency_ratio: float | None = Field(
        None,
        ge=1,
        le=100,
        description="Highest ratio of canary p95 latency to the stable revision's p95 in the same window "
        "(compared once both saw minRequests); unset: not compared.",
    )
    max_time_to_first_token_milliseconds: int | None = Field(
        None,
        ge=1,
        le=3600000,
        description="Highest mean time to first token of the canary in the window, as its vLLM engine "
        "measures it (vllm:time_to_first_token_seconds); unset, or a canary on the transformers engine "
        "(no engine metrics): not checked.",
    )


class QualityGateSpec(_ApiModel):
    """An offline quality check run on the canary before it takes any traffic."""

    config_map_ref: ConfigMapKeyRef = Field(
        description='ConfigMap key holding the evaluation set as JSON lines: {"text", "label"} for '
        'accuracy, {"text"} for perplexity.'
    )
    metric: QualityMetric = Field(
        description="accuracy (task classify, higher is better) or perplexity (task generate, lower is "
        "better)."
    )
    max_degradation: float = Field(
        0.02,
        ge=0,
        le=10,
        description="Largest relative degradation against the stable revision (0.02 = 2 percent).",
    )


class RolloutSpec(_ApiModel):
    """How a new revision replaces the stable one."""

    strategy: RolloutStrategy = Field(
        "Canary",
        description="Canary: shift traffic in steps gated by analysis; Immediate: switch all traffic once "
        "the new revision is ready.",
    )
    steps: list[CanaryStep] = Field(
        default_factory=_default_steps,
        min_length=1,
        max_length=20,
        description="Canary steps with strictly increasing weights; after the last step passes, the canary "
        "takes all traffic. Ignored for strategy Immediate.",
        json_schema_extra={
            "x-kubernetes-list-type": "atomic",
            "default": [step.model_dump(mode="json", by_alias=True) for step in _default_steps()],
            **_cel(
                (
                    "self.all(a, self.exists_one(b, b.weight == a.weight)) && "
                    "self.map(s, s.weight).isSorted()",
                    "steps[].weight must be strictly increasing",
                    None,
                ),
            ),
        },
    )
    analysis: AnalysisSpec = Field(
        default_factory=AnalysisSpec,
        description="Canary analysis thresholds.",
        json_schema_extra=_object_default(AnalysisSpec),
    )
    auto_rollback: bool = Field(
        True,
        description="On a failed analysis, send all traffic back to the stable revision; when false the "
        "rollout pauses instead (condition RolloutPaused).",
    )
    revision_history_limit: int = Field(
        10, ge=1, le=100, description="Revisions kept for rollback; older ones are garbage-collected."
    )
    quality_gate: QualityGateSpec | None = Field(
        None, description="Offline quality check of a new revision before its first canary step."
    )

    @model_validator(mode="after")
    def _steps_increase(self) -> RolloutSpec:
        weights = [step.weight for step in self.steps]
        if any(a >= b for a, b in pairwise(weights)):
            raise ValueError("steps[].weight must be strictly increasing")
        return self


# ------------------------------------------------------------------------------------------ failover


class GcsFaultToleranceSpec(_ApiModel):
    """KubeRay GCS fault tolerance: the Ray head keeps its state in Redis and survives restarts."""

    redis_address: str = Field(max_length=253, pattern=HOST_PORT_PATTERN, description="Redis host:port.")
    redis_password_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret key holding the Redis password."
    )


class StandbySpec(_ApiModel):
    """A second Ray cluster in another zone behind the same Service, switched to when the primary fails."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            ("!self.enabled || has(self.zone)", "zone is required when standby is enabled", ".zone"),
        )
    )

    enabled: bool = Field(False, description="Run the standby cluster.")
    zone: str | None = Field(
        None,
        min_length=1,
        max_length=63,
        description="Zone of the standby (node label topology.kubernetes.io/zone); the primary avoids it.",
    )
    switch_after_seconds: int = Field(
        60, ge=1, le=3600, description="How long the primary must be unready before traffic switches."
    )

    @model_validator(mode="after")
    def _zone_when_enabled(self) -> StandbySpec:
        if self.enabled and self.zone is None:
            raise ValueError("zone is required when standby is enabled")
        return self


class FailoverSpec(_ApiModel):
    """Revision- and cluster-level failover."""

    keep_previous_warm: bool = Field(
        False,
        description="After a promotion keep the previous revision running at weight 0; it takes traffic "
        "at once if the new stable revision turns unhealthy.",
    )
    gcs_fault_tolerance: GcsFaultToleranceSpec | None = Field(
        None, description="Keep Ray's GCS state in Redis so a head restart does not kill the workers."
    )
    standby: StandbySpec | None = Field(None, description="A standby cluster in another zone.")


# ---------------------------------------------------------------------------------------------- spec


class LanguageModelSpec(_ApiModel):
    """Desired state of a LanguageModel."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "self.model.generation.maxNewTokens <= self.serving.maxTokens",
                "model.generation.maxNewTokens must not exceed serving.maxTokens",
                ".model.generation.maxNewTokens",
            ),
            (
                "self.autoscaling.targetOngoingRequests <= double(self.serving.maxOngoingRequests)",
                "autoscaling.targetOngoingRequests must not exceed serving.maxOngoingRequests",
                ".autoscaling.targetOngoingRequests",
            ),
            (
                "self.model.quantization != 'int8' || self.runtime.gpus == 0",
                "int8 dynamic quantization runs on CPU only: set runtime.gpus to 0",
                ".model.quantization",
            ),
            (
                "!has(self.rollout.qualityGate) || "
                "(self.rollout.qualityGate.metric == 'accuracy' ? self.model.task == 'classify' "
                ": self.model.task == 'generate')",
                "qualityGate metric accuracy needs task classify; perplexity needs task generate",
                ".rollout.qualityGate.metric",
            ),
        )
    )

    model: ModelSpec = Field(description="The model to serve; a change rolls out a new revision.")
    runtime: RuntimeSpec = Field(
        default_factory=RuntimeSpec,
        description="Image, GPUs and resources of the Ray pods.",
        json_schema_extra=_object_default(RuntimeSpec),
    )
    serving: ServingSpec = Field(
        default_factory=ServingSpec,
        description="Batching, concurrency, request limits, API keys and rate limits.",
        json_schema_extra=_object_default(ServingSpec),
    )
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec,
        description="Replica autoscaling, including scale to zero.",
        json_schema_extra=_object_default(AutoscalingSpec),
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec,
        description="Canary or immediate rollout of new revisions, analysis and rollback.",
        json_schema_extra=_object_default(RolloutSpec),
    )
    failover: FailoverSpec = Field(
        default_factory=FailoverSpec,
        description="Warm previous revision, GCS fault tolerance and a standby cluster.",
        json_schema_extra=_object_default(FailoverSpec),
    )

    @model_validator(mode="after")
    def _cross_area(self) -> LanguageModelSpec:
        if self.model.generation.max_new_tokens > self.serving.max_tokens:
            raise ValueError("model.generation.maxNewTokens must not exceed serving.maxTokens")
        if self.autoscaling.target_ongoing_requests > self.serving.max_ongoing_requests:
            raise ValueError("autoscaling.targetOngoingRequests must not exceed serving.maxOngoingRequests")
        if self.model.quantization == "int8" and self.runtime.gpus != 0:
            raise ValueError("int8 dynamic quantization runs on CPU only: set runtime.gpus to 0")
        gate = self.rollout.quality_gate
        if gate is not None:
            wanted = "classify" if gate.metric == "accuracy" else "generate"
            if self.model.task != wanted:
                raise ValueError(
                    "qualityGate metric accuracy needs task classify; perplexity needs task generate"
                )
        return self


# -------------------------------------------------------------------------------------------- status


class _StatusModel(_ApiModel):
    """Status parts tolerate unknown fields: an older operator must not choke on a newer one's status."""

    model_config = ConfigDict(extra="ignore")


class Condition(_StatusModel):
    """A metav1.Condition."""

    type: ConditionType = Field(
        description="Ready: the endpoint serves traffic; Progressing: a rollout is under way; Degraded: "
        "some replicas or a revision are unhealthy; RolloutPaused: a rollout waits for a human."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1, max_length=1024, pattern=REASON_PATTERN, description="CamelCase reason."
    )
    message: str = Field("", max_length=32768, description="Human-readable details.")
    last_transition_time: datetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation the condition was computed for."
    )


class TrafficTarget(_StatusModel):
    """Share of traffic the Router sends to one revision."""

    revision: str = Field(description="Revision name.")
    weight: int = Field(ge=0, le=100, description="Percent of traffic; 0 keeps a warm fallback.")


class RevisionSummary(_StatusModel):
    """One entry of the revision history (a ControllerRevision)."""

    name: str = Field(description="Revision name (a hash of the fields that need new replicas).")
    number: int = Field(ge=1, description="Monotonic revision number, as kubectl rollout history shows.")
    created_at: datetime | None = Field(None, description="When the revision was first seen.")
    source: str | None = Field(None, description="spec.model.source of the revision.")


class RevisionReplicas(_StatusModel):
    """The replica floor of one revision (KubeRay reports no per-revision counts; see readyReplicas)."""

    revision: str = Field(description="Revision name.")
    ready: int = Field(0, ge=0, description="The floor once the revision's application runs, else 0.")
    desired: int = Field(
        0,
        ge=0,
        description="Replicas Serve keeps at the least: minReplicas (1 for a warm fallback at weight 0); "
        "autoscaling adds more under load, up to maxReplicas.",
    )


RolloutState = Literal["WaitingForReady", "QualityGate", "Progressing", "Paused", "Aborted"]


class RevisionCounts(_StatusModel):
    """Cumulative Router counters of one revision at the start of an analysis window."""

    revision: str = Field(description="Revision name.")
    requests: int = Field(0, ge=0, description="Call attempts.")
    errors: int = Field(0, ge=0, description="Call attempts that failed with a server error (5xx).")
    latency_buckets: list[int] = Field(
        default_factory=list,
        max_length=64,
        description="Cumulative latency histogram counts, one per bound of latencyBoundsSeconds plus +Inf.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    ttft_seconds_sum: float = Field(
        0.0, ge=0, description="Engine time to first token, summed over requests (vLLM revisions only)."
    )
    ttft_count: int = Field(0, ge=0, description="Requests in ttftSecondsSum.")


class MetricsBaseline(_StatusModel):
    """Router counters at the start of the current analysis window (so windowed deltas survive restarts)."""

    epoch: str = Field(description="Epoch of the Router's stats; a new epoch means the counters were reset.")
    time: datetime = Field(description="When the counters were read.")
    latency_bounds_seconds: list[float] = Field(
        default_factory=list,
        max_length=64,
        description="Upper bounds of the latency histogram buckets (without +Inf).",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    revisions: list[RevisionCounts] = Field(
        default_factory=list,
        max_length=16,
        description="Counters of the revisions under analysis.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["revision"]},
    )


class QualityGateResult(_StatusModel):
    """Outcome of the offline quality gate of a new revision."""

    revision: str = Field(description="Revision evaluated.")
    metric: QualityMetric = Field(description="accuracy or perplexity.")
    canary: float = Field(description="Metric of the new revision on the evaluation set.")
    stable: float | None = Field(None, description="Metric of the stable revision (None on a first deploy).")
    degradation: float = Field(
        0.0, description="Relative degradation of the new revision (0.02 = 2 percent)."
    )
    samples: int = Field(0, ge=0, description="Evaluation examples used.")
    verdict: Verdict = Field(description="Pass or Fail (Inconclusive when the gate could not run).")
    message: str = Field("", description="Why, in words.")
    time: datetime = Field(description="When the gate ran.")


class RolloutStatus(_StatusModel):
    """Progress of the current rollout."""

    revision: str | None = Field(
        None, description="Revision being rolled out (or whose rollout was aborted)."
    )
    state: RolloutState | None = Field(
        None,
        description="WaitingForReady (new revision starting, no traffic), QualityGate (offline evaluation), "
        "Progressing (walking the canary steps), Paused (failed analysis without autoRollback), Aborted "
        "(traffic back on stable until the spec changes or a promote/restart).",
    )
    started_at: datetime | None = Field(None, description="When the rollout began.")
    step: int = Field(0, ge=0, description="Index of the current canary step in spec.rollout.steps.")
    step_started_at: datetime | None = Field(None, description="When the current step began.")
    passed_checks: int = Field(0, ge=0, description="Passed analyses in the current step.")
    failed_checks: int = Field(0, ge=0, description="Failed analyses so far in this rollout.")
    last_check_at: datetime | None = Field(None, description="When the canary was last analysed.")
    promote_requested: bool = Field(
        False, description="A promote was requested; it applies as soon as the new revision is ready."
    )
    abort_reason: str | None = Field(None, description="Why the rollout was aborted or paused.")
    baseline: MetricsBaseline | None = Field(
        None, description="Router counters at the start of the current analysis window."
    )
    quality_gate: QualityGateResult | None = Field(None, description="Result of the quality gate, if run.")


class AnalysisResult(_StatusModel):
    """The most recent canary analysis."""

    revision: str = Field(description="Revision analysed.")
    requests: int = Field(0, ge=0, description="Requests in the analysis window.")
    error_rate: float = Field(0.0, ge=0, le=1, description="Fraction of failed requests.")
    p95_latency_milliseconds: float | None = Field(None, ge=0, description="p95 latency in the window.")
    errors: int = Field(0, ge=0, description="Failed (5xx) canary requests in the window.")
    window_seconds: float | None = Field(None, ge=0, description="Length of the analysis window.")
    stable_revision: str | None = Field(None, description="Stable revision compared against.")
    stable_requests: int = Field(0, ge=0, description="Stable requests in the window.")
    stable_error_rate: float | None = Field(None, ge=0, le=1, description="Stable error rate in the window.")
    stable_p95_latency_milliseconds: float | None = Field(
        None, ge=0, description="Stable p95 latency in the window."
    )
    mean_time_to_first_token_milliseconds: float | None = Field(
        None, ge=0, description="The canary's mean engine time to first token in the window (vLLM only)."
    )
    max_time_to_first_token_milliseconds: int | None = Field(
        None, description="Threshold applied: spec maxTimeToFirstTokenMilliseconds."
    )
    max_error_rate: float | None = Field(None, description="Threshold applied: spec maxErrorRate.")
    max_p95_latency_milliseconds: int | None = Field(
        None, description="Threshold applied: spec maxP95LatencyMilliseconds."
    )
    max_latency_ratio: float | None = Field(None, description="Threshold applied: spec maxLatencyRatio.")
    min_requests: int | None = Field(None, description="Threshold applied: spec minRequests.")
    verdict: Verdict = Field(description="Pass, Fail, or Inconclusive (too few requests).")
    message: str = Field("", description="Why, in words.")
    time: datetime = Field(description="When the analysis ran.")


ServingCluster = Literal["primary", "standby"]


class StandbyStatus(_StatusModel):
    """Which cluster the Service sends traffic to, and since when the primary has been unready.

    Kept in status (not in memory) so an operator restart neither restarts nor forgets the countdown.
    """

    ray_service_name: str = Field(description="Name of the standby RayService.")
    serving: ServingCluster = Field(
        "primary", description="Cluster the Service <name> selects: primary or standby."
    )
    primary_unready_since: datetime | None = Field(
        None, description="Since when the primary has had no ready serve endpoints (unset while it has)."
    )
    switched_at: datetime | None = Field(None, description="When the Service last switched clusters.")
    standby_ready: bool = Field(False, description="The standby has at least one ready serve endpoint.")
    message: str = Field("", description="Why the Service selects this cluster, in words.")


class LanguageModelStatus(_StatusModel):
    """Observed state, written by the operator.

    Phases: Pending (accepted, nothing created yet), Deploying (first revision starting), Ready (all
    traffic on a healthy stable revision), Progressing (a canary is taking traffic step by step), Paused (a
    rollout waits for a human: failed analysis without autoRollback), Degraded (serving, but replicas or
    the canary are unhealthy, or a rollback happened), Failed (nothing can serve: bad spec or the revision
    cannot start), ScaledToZero (minReplicas 0 and idle: no replicas, the first request starts one).
    """

    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation the status was computed for."
    )
    phase: Phase | None = Field(
        None,
        description="Pending, Deploying, Ready, Progressing, Paused, Degraded, Failed or ScaledToZero "
        "(see the LanguageModel documentation).",
    )
    conditions: list[Condition] | None = Field(
        None,
        max_length=16,
        description="Ready, Progressing, Degraded and RolloutPaused conditions.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    stable_revision: str | None = Field(None, description="Revision taking traffic outside a rollout.")
    canary_revision: str | None = Field(None, description="Revision being rolled out, if any.")
    fallback_revision: str | None = Field(
        None, description="Previous revision kept warm at weight 0 (failover.keepPreviousWarm)."
    )
    canary_weight: int | None = Field(
        None, ge=0, le=100, description="Percent of traffic on the canary revision."
    )
    traffic: list[TrafficTarget] | None = Field(
        None,
        max_length=16,
        description="Traffic split over revisions, as configured in the Router.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["revision"]},
    )
    revisions: list[RevisionSummary] | None = Field(
        None,
        max_length=128,
        description="Revision history, newest last; bounded by spec.rollout.revisionHistoryLimit.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    endpoint: str | None = Field(None, description="In-cluster URL of the OpenAI-compatible endpoint.")
    ready_replicas: int | None = Field(
        None,
        ge=0,
        description="Model replicas running now over all revisions, following autoscaling: the Ray worker "
        "pods KubeRay reports ready (one replica each); in local mode, Serve's running replicas.",
    )
    replicas: list[RevisionReplicas] | None = Field(
        None,
        max_length=16,
        description="The replica floor per revision.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["revision"]},
    )
    rollout: RolloutStatus | None = Field(None, description="Progress of the current rollout.")
    last_analysis: AnalysisResult | None = Field(None, description="The most recent canary analysis.")
    ray_service_name: str | None = Field(None, description="Name of the RayService the operator manages.")
    cluster_upgrade: str | None = Field(
        None, description="Set while KubeRay replaces the Ray cluster (for example after an image change)."
    )
    standby: StandbyStatus | None = Field(
        None, description="Standby cluster failover state (spec.failover.standby.enabled)."
    )


# ---------------------------------------------------------------------------------------- the object


class ObjectMeta(BaseModel):
    """The metadata the operator reads; everything else is kept as is."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: str = Field(min_length=1)
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None

    @field_validator("name")
    @classmethod
    def _short_name(cls, name: str) -> str:
        if len(name) > MAX_NAME_LENGTH:
            raise ValueError(NAME_TOO_LONG)
        return name


class LanguageModel(_ApiModel):
    """A language model served on Ray Serve by KubeRay: revisions, canary rollout, autoscaling, failover."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
                NAME_TOO_LONG,
                None,
            ),
        )
    )

    api_version: Literal["lmops.io/v1alpha1"] = Field("lmops.io/v1alpha1", description="lmops.io/v1alpha1.")
    kind: Literal["LanguageModel"] = Field("LanguageModel", description="LanguageModel.")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: LanguageModelSpec = Field(description="Desired state.")
    status: LanguageModelStatus | None = Field(None, description="Observed state.")
