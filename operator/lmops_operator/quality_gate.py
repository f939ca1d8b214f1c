"""The quality gate: a small evaluation set run against a new revision and the stable one before any traffic.

The evaluation set is JSON lines in a ConfigMap key: ``{"text": ..., "label": ...}`` for accuracy (task
classify), ``{"text": ...}`` for perplexity (task generate). The new revision passes when its relative
degradation against the stable revision is at most ``maxDegradation``: for accuracy (higher is better)
``(stable - canary) / stable``, for perplexity (lower is better) ``(canary - stable) / stable``.

The comparison is pure (``compare``); evaluating goes through the model's Router with revision-pinned calls
(``RouterEvaluator``), the same way in a cluster and in local mode.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx

from lmops_operator.api.base import QualityMetric
from lmops_operator.api.models import LanguageModelSpec
from lmops_operator.api.rollout_spec import QualityGateSpec
from lmops_operator.api.status import LanguageModelStatus, QualityGateResult
from lmops_operator.router_client import post_pinned

MAX_EXAMPLES = 1000


@dataclass(frozen=True)
class Example:
    text: str
    label: str | None = None


class Evaluator(Protocol):
    """Evaluates one revision (``data`` is its stored revision data: the runtime model spec and more)."""

    def accuracy(self, revision: str, data: Mapping[str, Any], examples: list[Example]) -> float: ...

    def perplexity(self, revision: str, data: Mapping[str, Any], texts: list[str]) -> float: ...


def parse_eval_set(text: str, metric: QualityMetric) -> list[Example]:
    """Parse the JSON-lines evaluation set; ValueError names the first bad line."""
    examples: list[Example] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: not JSON ({exc.msg})") from None
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"]:
            raise ValueError(f"line {number}: needs a non-empty string field 'text'")
        label = item.get("label")
        if metric == "accuracy" and not isinstance(label, str):
            raise ValueError(f"line {number}: accuracy needs a string field 'label'")
        examples.append(Example(item["text"], label if isinstance(label, str) else None))
    if not examples:
        raise ValueError("the evaluation set is empty")
    if len(examples) > MAX_EXAMPLES:
        raise ValueError(f"the evaluation set has {len(examples)} examples; at most {MAX_EXAMPLES}")
    return examples


def compare(
    metric: QualityMetric, canary: float, stable: float, max_degradation: float
) -> tuple[float, bool]:
    """(relative degradation of the canary, passed)."""
    if metric == "accuracy":
        degradation = (stable - canary) / stable if stable > 0 else (0.0 if canary >= stable else 1.0)
    else:
        degradation = (canary - stable) / stable if stable > 0 else (0.0 if canary <= stable else math.inf)
    return degradation, degradation <= max_degradation


def gate_unavailable(gate: QualityGateSpec, revision: str, why: str, now: datetime) -> QualityGateResult:
    """An Inconclusive result: the rollout waits in state QualityGate, the status says why."""
    return QualityGateResult(
        revision=revision, metric=gate.metric, canary=0.0, verdict="Inconclusive", message=why, time=now
    )


def evaluate_gate(
    gate: QualityGateSpec,
    canary: str,
    stable: str | None,
    revision_data: Mapping[str, Mapping[str, Any]],
    examples: list[Example],
    evaluator: Evaluator,
    now: datetime,
) -> QualityGateResult:
    """Run the evaluation set on both revisions and judge the canary."""

    def score(revision: str) -> float:
        data = revision_data[revision]
        if gate.metric == "accuracy":
            return evaluator.accuracy(revision, data, examples)
        return evaluator.perplexity(revision, data, [e.text for e in examples])

    try:
        canary_value = score(canary)
        stable_value = score(stable) if stable is not None else None
    except Exception as exc:  # the evaluation itself broke: report it, do not guess a verdict
        return gate_unavailable(gate, canary, f"evaluation failed: {exc}", now)
    if stable_value is None:
        return QualityGateResult(
            revision=canary, metric=gate.metric, canary=canary_value, samples=len(examples),
            verdict="Pass", message=f"{gate.metric} {canary_value:.4g} (no stable revision to compare)",
            time=now,
        )  # fmt: skip
    degradation, passed = compare(gate.metric, canary_value, stable_value, gate.max_degradation)
    message = (
        f"{gate.metric} {canary_value:.4g} vs stable {stable_value:.4g}: degradation {degradation:.2%} "
        f"{'within' if passed else 'exceeds'} maxDegradation {gate.max_degradation:.2%}"
    )
    return QualityGateResult(
        revision=canary,
        metric=gate.metric,
        canary=canary_value,
        stable=stable_value,
        degradation=degradation if math.isfinite(degradation) else 1e9,
        samples=len(examples),
        verdict="Pass" if passed else "Fail",
        message=message,
        time=now,
    )


def gate_waits(spec: LanguageModelSpec, status: LanguageModelStatus | None) -> bool:
    """The rollout waits in state QualityGate: the only time the gate runs (checked before any work, since
    every reconcile asks)."""
    rollout = status.rollout if status is not None else None
    return spec.rollout.quality_gate is not None and rollout is not None and rollout.state == "QualityGate"


def run_gate_if_due(
    spec: LanguageModelSpec,
    status: LanguageModelStatus,
    target: str,
    revision_data: Mapping[str, Mapping[str, Any]],
    read_config_map: Callable[[str, str], str | None],
    evaluator: Evaluator | None,
    now: datetime,
) -> QualityGateResult | None:
    """The gate's result when the previous status waits in state QualityGate for ``target``, else None.

    This is what a reconcile passes as ``TrafficInput.quality``; ``read_config_map(name, key)`` returns the
    key's text or None when the ConfigMap or key is missing.
    """
    gate = spec.rollout.quality_gate
    rollout = status.rollout
    if gate is None or rollout is None or not gate_waits(spec, status) or rollout.revision != target:
        return None
    ref = gate.config_map_ref
    text = read_config_map(ref.name, ref.key)
    if text is None:
        return gate_unavailable(gate, target, f"ConfigMap {ref.name} has no key {ref.key}", now)
    if evaluator is None:
        return gate_unavailable(gate, target, "no evaluator can reach the revisions", now)
    try:
        examples = parse_eval_set(text, gate.metric)
    except ValueError as exc:
        return gate_unavailable(gate, target, f"evaluation set {ref.name}/{ref.key}: {exc}", now)
    return evaluate_gate(gate, target, status.stable_revision, revision_data, examples, evaluator, now)


class RouterEvaluator:
    """Evaluates through the model's Router - in a cluster and in local mode alike - pinning every call to
    one revision with the ``x-lmops-revision`` request header (the Router accepts weight-0 canaries, so the
    gate runs before any traffic). Accuracy uses ``POST /predict``; perplexity ``POST /v1/score``. Each
    answer's header must name the pinned revision, so a Router that ignored the pin is detected and the gate
    reports Inconclusive instead of judging a mix of revisions. Pinned calls get no exemption from the
    Router's API keys: with ``spec.serving.apiKeySecretRef`` set, pass one of its keys as ``api_key``."""

    def __init__(
        self, base_url: str, timeout_s: float = 120.0, batch: int = 32, api_key: str | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.batch = batch
        self.api_key = api_key

    def _post(self, client: httpx.Client, path: str, body: dict[str, Any], revision: str) -> Any:
        return post_pinned(client, self.base_url, path, body, revision, self.api_key)

    def accuracy(self, revision: str, data: Mapping[str, Any], examples: list[Example]) -> float:
        right = 0
        with httpx.Client(timeout=self.timeout_s) as client:
            for start in range(0, len(examples), self.batch):
                chunk = examples[start : start + self.batch]
                body = self._post(client, "/predict", {"texts": [e.text for e in chunk]}, revision)
                predictions = body["predictions"]
                right += sum(1 for e, p in zip(chunk, predictions, strict=True) if p["label"] == e.label)
        return right / len(examples)

    def perplexity(self, revision: str, data: Mapping[str, Any], texts: list[str]) -> float:
        """exp of the mean negative log-likelihood per scored token over the whole set (not per text), so
        long texts weigh by their length, as in the usual corpus perplexity."""
        log_likelihood, tokens = 0.0, 0
        with httpx.Client(timeout=self.timeout_s) as client:
            for start in range(0, len(texts), self.batch):
                body = self._post(client, "/v1/score", {"input": texts[start : start + self.batch]}, revision)
                for item in body["data"]:
                    log_likelihood += float(item["log_likelihood"])
                    tokens += int(item["tokens"])
        if tokens == 0:
            raise ValueError("no text in the evaluation set has two or more tokens")
        return math.exp(-log_likelihood / tokens)
