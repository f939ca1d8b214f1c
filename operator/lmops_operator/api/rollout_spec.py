"""``spec.rollout`` and ``spec.failover``: how new revisions replace the stable one and how it fails over."""

from __future__ import annotations

from pydantic import Field, field_validator

from lmops_operator.api.base import (
    HOST_PORT_PATTERN,
    ApiModel,
    ConfigMapKeyRef,
    QualityMetric,
    RolloutStrategy,
    SecretKeyRef,
    object_default,
)
from lmops_operator.api.changes import Change, cost
from lmops_operator.api.rules import (
    Rule,
    cel_schema,
    check,
    field,
    has,
    strictly_increasing,
)

# ------------------------------------------------------------------------------------------- rollout


class CanaryStep(ApiModel):
    """One canary step: send weight percent of traffic to the new revision, then analyse for a while."""

    weight: int = Field(ge=1, le=100, description="Percent of traffic on the canary during this step.")
    pause_seconds: int = Field(
        60, ge=0, le=86400, description="How long the step lasts before the next analysis decides."
    )


STEPS_INCREASE = Rule(strictly_increasing("weight"), "steps[].weight must be strictly increasing")


def _default_steps() -> list[CanaryStep]:
    return [CanaryStep(weight=10, pause_seconds=60), CanaryStep(weight=50, pause_seconds=60)]


class AnalysisSpec(ApiModel):
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


class QualityGateSpec(ApiModel):
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


class RolloutSpec(ApiModel):
    """How a new revision replaces the stable one."""

    strategy: RolloutStrategy = Field(
        "Canary",
        description="Canary: shift traffic in steps gated by analysis; Immediate: switch all traffic once "
        "the new revision is ready.",
        json_schema_extra=cost(Change.POLICY),
    )
    steps: list[CanaryStep] = Field(
        default_factory=_default_steps,
        min_length=1,
        max_length=20,
        description="Canary steps with strictly increasing weights; after the last step passes, the canary "
        "takes all traffic. Ignored for strategy Immediate.",
        json_schema_extra=cost(
            Change.POLICY,
            extra={
                "x-kubernetes-list-type": "atomic",
                "default": [step.model_dump(mode="json", by_alias=True) for step in _default_steps()],
                **cel_schema([STEPS_INCREASE]),
            },
        ),
    )
    analysis: AnalysisSpec = Field(
        default_factory=AnalysisSpec,
        description="Canary analysis thresholds.",
        json_schema_extra=cost(Change.POLICY, extra=object_default(AnalysisSpec)),
    )
    auto_rollback: bool = Field(
        True,
        description="On a failed analysis, send all traffic back to the stable revision; when false the "
        "rollout pauses instead (condition RolloutPaused).",
        json_schema_extra=cost(Change.POLICY),
    )
    revision_history_limit: int = Field(
        10,
        ge=1,
        le=100,
        description="Revisions kept for rollback; older ones are garbage-collected.",
        json_schema_extra=cost(Change.POLICY),
    )
    quality_gate: QualityGateSpec | None = Field(
        None,
        description="Offline quality check of a new revision before its first canary step.",
        json_schema_extra=cost(Change.POLICY),
    )

    @field_validator("steps")
    @classmethod
    def _steps_increase(cls, steps: list[CanaryStep]) -> list[CanaryStep]:
        check([STEPS_INCREASE], steps)
        return steps


# ------------------------------------------------------------------------------------------ failover


class GcsFaultToleranceSpec(ApiModel):
    """KubeRay GCS fault tolerance: the Ray head keeps its state in Redis and survives restarts."""

    redis_address: str = Field(max_length=253, pattern=HOST_PORT_PATTERN, description="Redis host:port.")
    redis_password_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret key holding the Redis password."
    )


class StandbySpec(ApiModel):
    """A second Ray cluster in another zone behind the same Service, switched to when the primary fails."""

    rules = (
        Rule(
            ~field("enabled").truthy() | has(field("zone")),
            "zone is required when standby is enabled",
            ".zone",
        ),
    )

    enabled: bool = Field(
        False, description="Run the standby cluster.", json_schema_extra=cost(Change.CLUSTER)
    )
    zone: str | None = Field(
        None,
        min_length=1,
        max_length=63,
        description="Zone of the standby (node label topology.kubernetes.io/zone); the primary avoids it.",
        json_schema_extra=cost(Change.CLUSTER),
    )
    switch_after_seconds: int = Field(
        60,
        ge=1,
        le=3600,
        description="How long the primary must be unready before traffic switches.",
        json_schema_extra=cost(Change.POLICY),
    )


class FailoverSpec(ApiModel):
    """Revision- and cluster-level failover."""

    keep_previous_warm: bool = Field(
        False,
        description="After a promotion keep the previous revision running at weight 0; it takes traffic "
        "at once if the new stable revision turns unhealthy.",
        json_schema_extra=cost(Change.POLICY),
    )
    gcs_fault_tolerance: GcsFaultToleranceSpec | None = Field(
        None,
        description="Keep Ray's GCS state in Redis so a head restart does not kill the workers.",
        json_schema_extra=cost(Change.CLUSTER),
    )
    standby: StandbySpec | None = Field(None, description="A standby cluster in another zone.")
