"""The quality gate: a small evaluation set run against a new revision and the stable one before any traffic.

The evaluation set is JSON lines in a ConfigMap key: ``{"text": ..., "label": ...}`` for accuracy (task
classify), ``{"text": ...}`` for perplexity (task generate). The new revision passes when its relative
degradation against the stable revision is at most ``maxDegradation``: for accuracy (higher is better)
``(stable - canary) / stable``, for perplexity (lower is better) ``(canary - stable) / stable``.

The comparison is pure (``compare``); evaluating needs a revision-pinned path to the model: local mode calls
the revision's ModelServer through its Serve handle for accuracy and scores perplexity with the revision's
stored model spec (``LocalEvaluator``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from lmops_operator.api.models import (
    LanguageModelSpec,
    LanguageModelStatus,
    QualityGateResult,
    QualityGateSpec,
    QualityMetric,
)

MAX_EXAMPLES = 1000
# The Router's response header naming the revision that served a call (and the pin request header).
REVISION_HEADER = "x-lmops-revision"


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


class LocalEvaluator:
    """Local mode: accuracy through the revision's ModelServer (its Serve handle pins the revision);
    perplexity by scoring the texts with the revision's model loaded from its stored spec, because the
    ModelServer has no scoring method yet."""

    def accuracy(self, revision: str, data: Mapping[str, Any], examples: list[Example]) -> float:
        from ray import serve

        from lmops_runtime import config as contract
        from lmops_runtime.protocol import ClassifyRequest

        handle = serve.get_deployment_handle(
            contract.SERVER_DEPLOYMENT, app_name=contract.server_app_name(revision)
        )
        result = handle.classify.remote(ClassifyRequest(texts=[e.text for e in examples])).result(
            timeout_s=300
        )
        right = sum(
            1 for e, scores in zip(examples, result.predictions, strict=True) if scores[0].label == e.label
        )
        return right / len(examples)

    def perplexity(self, revision: str, data: Mapping[str, Any], texts: list[str]) -> float:
        import torch

        from lmops_runtime.config import ModelSpec
        from lmops_runtime.loading import load_model

        loaded = load_model(ModelSpec.model_validate(data["model"]), device="cpu")
        nll, tokens = 0.0, 0
        with torch.inference_mode():
            for text in texts:
                ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"][
                    :, : loaded.max_sequence_length
                ]
                if ids.shape[1] < 2:
                    continue
                loss = loaded.model(input_ids=ids, labels=ids).loss
                nll += float(loss) * (ids.shape[1] - 1)
                tokens += ids.shape[1] - 1
        if tokens == 0:
            raise ValueError("no text in the evaluation set has two or more tokens")
        return math.exp(nll / tokens)


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
    if gate is None or rollout is None or rollout.state != "QualityGate" or rollout.revision != target:
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
    """In a cluster: evaluates through the model's Router, asking for one revision per call with the
    ``x-lmops-revision`` request header, and checking the answer's header says that revision served it.
    A Router that cannot pin revisions is detected (the answering revision differs) and the gate reports
    Inconclusive instead of judging a mix of revisions. Perplexity needs a scoring endpoint the Router
    does not have, so it is reported as unavailable here (local mode scores it directly)."""

    def __init__(self, base_url: str, timeout_s: float = 120.0, batch: int = 32) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.batch = batch

    def accuracy(self, revision: str, data: Mapping[str, Any], examples: list[Example]) -> float:
        import httpx

        right = 0
        with httpx.Client(timeout=self.timeout_s) as client:
            for start in range(0, len(examples), self.batch):
                chunk = examples[start : start + self.batch]
                response = client.post(
                    f"{self.base_url}/predict",
                    json={"texts": [e.text for e in chunk]},
                    headers={REVISION_HEADER: revision},
                )
                response.raise_for_status()
                served = response.headers.get(REVISION_HEADER)
                if served != revision:
                    raise RuntimeError(f"the Router cannot pin revision {revision} (answered by {served})")
                predictions = response.json()["predictions"]
                right += sum(1 for e, p in zip(chunk, predictions, strict=True) if p["label"] == e.label)
        return right / len(examples)

    def perplexity(self, revision: str, data: Mapping[str, Any], texts: list[str]) -> float:
        raise RuntimeError("perplexity needs a scoring endpoint on the Router, which it does not have yet")
