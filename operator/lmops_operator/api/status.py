"""``status``: what the operator observed and decided, written back on every reconcile."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from lmops_operator.api.base import (
    REASON_PATTERN,
    ApiModel,
    ConditionStatus,
    ConditionType,
    Phase,
    QualityMetric,
    Verdict,
)

# -------------------------------------------------------------------------------------------- status


class _StatusModel(ApiModel):
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
