"""``spec.runtime``, ``spec.serving`` and ``spec.autoscaling``: where replicas run and how they serve."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lmops_operator.api.base import (
    HEADER_PATTERN,
    QUANTITY_PATTERN,
    RESOURCE_NAME_PATTERN,
    ApiModel,
    SecretKeyRef,
    object_default,
)
from lmops_operator.api.changes import Change, cost
from lmops_operator.api.rules import (
    Rule,
    field,
    has,
    only_if,
)

# ------------------------------------------------------------------------------------------- runtime


class Toleration(ApiModel):
    """A core/v1 Toleration, copied onto the Ray worker pods."""

    rules = (
        Rule(
            ~has(field("operator")) | field("operator").ne("Exists") | ~has(field("value")),
            "value must be empty when operator is Exists",
            ".value",
        ),
        only_if(
            "tolerationSeconds",
            has(field("effect")) & field("effect").eq("NoExecute"),
            "tolerationSeconds is only allowed with effect NoExecute",
        ),
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


class HeadSpec(ApiModel):
    """Resources of the Ray head pod (GCS, dashboard, Serve controller; no model replicas)."""

    cpu: str = Field("1", pattern=QUANTITY_PATTERN, description="CPU request and limit (a quantity).")
    memory: str = Field("2Gi", pattern=QUANTITY_PATTERN, description="Memory request and limit (a quantity).")


class RuntimeSpec(ApiModel):
    """Where and on what model replicas run: one Ray worker pod per replica."""

    rules = (only_if("gpuType", field("gpus").gt(0), "gpuType needs gpus > 0"),)

    image: str | None = Field(
        None,
        min_length=1,
        max_length=512,
        description="Runtime image for the Ray head and workers; the operator's default image when unset. "
        "A new image is reported in status.clusterUpgrade while KubeRay moves to a new cluster.",
        json_schema_extra=cost(Change.CLUSTER),
    )
    gpus: int = Field(
        1,
        ge=0,
        le=16,
        description="GPUs per replica; 0 runs the replica on CPU.",
        json_schema_extra=cost(Change.REVISION, "resources.gpus"),
    )
    gpu_resource_name: str = Field(
        "nvidia.com/gpu",
        max_length=253,
        pattern=RESOURCE_NAME_PATTERN,
        description="Extended resource name that GPUs are requested under.",
        json_schema_extra=cost(Change.CLUSTER),
    )
    gpu_type: str | None = Field(
        None,
        min_length=1,
        max_length=63,
        description="GPU model to schedule on, matched as the node label nvidia.com/gpu.product "
        "(for example NVIDIA-H100-80GB-HBM3).",
        json_schema_extra=cost(Change.CLUSTER),
    )
    node_selector: dict[str, str] | None = Field(
        None,
        description="Extra node labels the worker pods must match.",
        json_schema_extra=cost(Change.CLUSTER),
    )
    tolerations: list[Toleration] | None = Field(
        None,
        max_length=32,
        description="Tolerations of the worker pods (for example for tainted GPU nodes).",
        json_schema_extra=cost(Change.CLUSTER, extra={"x-kubernetes-list-type": "atomic"}),
    )
    cpu: str = Field(
        "2",
        pattern=QUANTITY_PATTERN,
        description="CPU request and limit per replica (a quantity).",
        json_schema_extra=cost(Change.REVISION, "resources.cpu"),
    )
    memory: str = Field(
        "8Gi",
        pattern=QUANTITY_PATTERN,
        description="Memory request and limit per replica (a quantity).",
        json_schema_extra=cost(Change.REVISION, "resources.memory"),
    )
    head: HeadSpec = Field(
        default_factory=HeadSpec,
        description="Ray head pod resources.",
        json_schema_extra=cost(Change.CLUSTER, extra=object_default(HeadSpec)),
    )


# ------------------------------------------------------------------------------------------- serving


class ServingSpec(ApiModel):
    """Request handling: batching, concurrency, limits, authentication and rate limits."""

    rules = (
        only_if(
            "rateLimitPerMinute",
            has(field("apiKeySecretRef")),
            "rateLimitPerMinute counts requests per API key and needs apiKeySecretRef",
        ),
    )

    max_batch_size: int = Field(
        8,
        ge=1,
        le=256,
        description="Most requests a replica runs in one forward pass (continuous batching).",
        json_schema_extra=cost(Change.REVISION, "batching.max_batch_size"),
    )
    batch_wait_timeout_milliseconds: int = Field(
        10,
        ge=0,
        le=10000,
        description="How long a replica waits to fill a batch before running it.",
        json_schema_extra=cost(Change.REVISION, "batching.batch_wait_timeout_s", per=1000),
    )
    max_ongoing_requests: int = Field(
        32,
        ge=1,
        le=10000,
        description="Requests a replica accepts at once; more wait in the Router.",
        json_schema_extra=cost(Change.RECONFIGURE),
    )
    max_request_bytes: int = Field(
        1000000,
        ge=1024,
        le=104857600,
        description="Largest request body accepted, in bytes (413 above).",
        json_schema_extra=cost(Change.RECONFIGURE),
    )
    max_tokens: int = Field(
        4096,
        ge=1,
        le=1048576,
        description="Largest max_tokens a request may ask for (400 above).",
        json_schema_extra=cost(Change.RECONFIGURE),
    )
    api_key_secret_ref: SecretKeyRef | None = Field(
        None,
        description="Secret key holding the accepted API keys, one per line; requests must send one as "
        "'Authorization: Bearer <key>'. Unset: no authentication.",
        json_schema_extra=cost(Change.CLUSTER),
    )
    rate_limit_per_minute: int | None = Field(
        None,
        ge=1,
        le=1000000,
        description="Requests per minute allowed per API key (429 above).",
        json_schema_extra=cost(Change.RECONFIGURE),
    )
    sticky_session_header: str | None = Field(
        None,
        max_length=64,
        pattern=HEADER_PATTERN,
        description="Request header whose value pins a client to one revision during a canary.",
        json_schema_extra=cost(Change.RECONFIGURE),
    )
    stream_interval_milliseconds: int = Field(
        50,
        ge=0,
        le=1000,
        description="Streamed tokens produced within this window go out as one chunk, so a fast model does "
        "not pay a Ray Serve message per token; the first token is never held. 0 sends every token alone.",
        json_schema_extra=cost(Change.RECONFIGURE),
    )
    stream_chunks_per_second: int = Field(
        200,
        ge=0,
        le=100_000,
        description="Most streamed chunks one replica sends a second over all its streams: with many streams "
        "open, each one's window widens past streamIntervalMilliseconds to stay within it (a message costs "
        "CPU in the replica, the Router and the proxy whatever it carries). 0: no limit. Not applied "
        "with streamIntervalMilliseconds 0.",
        json_schema_extra=cost(Change.RECONFIGURE),
    )


# --------------------------------------------------------------------------------------- autoscaling


class AutoscalingSpec(ApiModel):
    """Replica autoscaling by Ray Serve; the Ray autoscaler adds and removes worker pods to match."""

    rules = (
        Rule(
            field("minReplicas").le(field("maxReplicas")),
            "minReplicas must not exceed maxReplicas",
            ".minReplicas",
        ),
    )

    min_replicas: int = Field(
        1,
        ge=0,
        le=1000,
        description="Fewest replicas per revision; 0 scales to zero when idle.",
        json_schema_extra=cost(Change.RECONFIGURE),
    )
    max_replicas: int = Field(
        1,
        ge=1,
        le=1000,
        description="Most replicas per revision.",
        json_schema_extra=cost(Change.RECONFIGURE),
    )
    target_ongoing_requests: float = Field(
        4.0,
        gt=0,
        le=10000,
        description="Ongoing requests per replica that autoscaling aims for (with metric queueLength: how "
        "many each replica may hold when nothing waits, before replicas are removed).",
        json_schema_extra=cost(Change.RECONFIGURE),
    )
    metric: Literal["ongoingRequests", "queueLength"] = Field(
        "ongoingRequests",
        description="What autoscaling follows. ongoingRequests: Ray Serve's rule, requests per replica "
        "against targetOngoingRequests. queueLength: requests waiting for a batch slot (the engine's "
        "queue, vLLM's num_requests_waiting, plus requests held at the Router when every replica is full) "
        "against targetQueueLength; a replica busy with a full batch but no queue is not scaled out.",
        json_schema_extra=cost(Change.RECONFIGURE),
    )
    target_queue_length: float = Field(
        1.0,
        gt=0,
        le=10000,
        description="Waiting requests per replica that autoscaling on metric queueLength aims for.",
        json_schema_extra=cost(Change.RECONFIGURE),
    )
    upscale_delay_seconds: int = Field(
        30,
        ge=0,
        le=3600,
        description="How long load must stay high before adding replicas.",
        json_schema_extra=cost(Change.RECONFIGURE),
    )
    downscale_delay_seconds: int = Field(
        600,
        ge=0,
        le=86400,
        description="How long load must stay low before removing replicas.",
        json_schema_extra=cost(Change.RECONFIGURE),
    )
    scale_from_zero_timeout_seconds: int = Field(
        120,
        ge=1,
        le=3600,
        description="How long the Router holds a request while a revision scaled to zero starts (503 after).",
        json_schema_extra=cost(Change.RECONFIGURE),
    )
    worker_idle_timeout_seconds: int | None = Field(
        None,
        ge=1,
        le=86400,
        description="How long a Ray worker pod runs with no replica on it before the Ray autoscaler removes "
        "it (KubeRay's autoscalerOptions.idleTimeoutSeconds). Unset: the Ray autoscaler's default, 60 s. "
        "Shorter gives back a scaled-in or aborted canary's pod sooner; longer keeps it for the next rise.",
        json_schema_extra=cost(Change.CLUSTER),
    )
