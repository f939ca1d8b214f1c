"""Hand-picked invalid LanguageModels, shared by the unit tests (the pydantic models must reject them) and the
control-plane tests (the real API server must reject them, naming the field and the rule's message).

Each case is a deep-merge patch over ``base_object()``; ``DELETE`` removes a key. ``path`` is the field the
API server names; pydantic names the same field, or the object that holds a cross-field rule (a prefix).
``message`` is a substring of the API server's message (for CEL rules also of pydantic's).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

DELETE = object()


def base_object(name: str = "valid") -> dict[str, Any]:
    """A small valid LanguageModel that every case changes in one place."""
    return {
        "apiVersion": "lmops.io/v1alpha1",
        "kind": "LanguageModel",
        "metadata": {"name": name},
        "spec": {
            "model": {"source": "builtin://tiny", "task": "generate"},
            "runtime": {"gpus": 0, "cpu": "1", "memory": "2Gi"},
        },
    }


def merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``patch`` into a copy of ``target``; lists are replaced, ``DELETE`` removes."""
    out = copy.deepcopy(target)
    for key, value in patch.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class InvalidCase:
    id: str
    patch: dict[str, Any]
    path: str
    message: str
    cel: bool = False  # a cross-field (CEL) rule: pydantic reports the same message

    def object(self, name: str) -> dict[str, Any]:
        return merge(base_object(name), self.patch)


def _spec(**areas: Any) -> dict[str, Any]:
    return {"spec": areas}


INVALID_CASES: tuple[InvalidCase, ...] = (
    InvalidCase(
        "min-gt-max",
        _spec(autoscaling={"minReplicas": 3, "maxReplicas": 2}),
        "spec.autoscaling.minReplicas",
        "minReplicas must not exceed maxReplicas",
        cel=True,
    ),
    InvalidCase(
        "labels-without-classify",
        _spec(model={"labels": ["a", "b"]}),
        "spec.model.labels",
        "labels are only allowed when task is classify",
        cel=True,
    ),
    InvalidCase(
        "classify-without-labels",
        _spec(model={"task": "classify"}),
        "spec.model.labels",
        "labels are required when task is classify",
        cel=True,
    ),
    InvalidCase(
        "weights-decreasing",
        _spec(rollout={"steps": [{"weight": 50}, {"weight": 10}]}),
        "spec.rollout.steps",
        "steps[].weight must be strictly increasing",
        cel=True,
    ),
    InvalidCase(
        "weights-repeated",
        _spec(rollout={"steps": [{"weight": 10}, {"weight": 10}, {"weight": 50}]}),
        "spec.rollout.steps",
        "steps[].weight must be strictly increasing",
        cel=True,
    ),
    InvalidCase(
        "weight-over-100",
        _spec(rollout={"steps": [{"weight": 101}]}),
        "spec.rollout.steps[0].weight",
        "should be less than or equal to 100",
    ),
    InvalidCase(
        "weight-zero",
        _spec(rollout={"steps": [{"weight": 0}]}),
        "spec.rollout.steps[0].weight",
        "should be greater than or equal to 1",
    ),
    InvalidCase(
        "no-steps", _spec(rollout={"steps": []}), "spec.rollout.steps", "should have at least 1 items"
    ),
    InvalidCase(
        "bad-source-scheme",
        _spec(model={"source": "ftp://models/gpt2"}),
        "spec.model.source",
        "should match",
    ),
    InvalidCase(
        "bad-builtin", _spec(model={"source": "builtin://huge"}), "spec.model.source", "should match"
    ),
    InvalidCase(
        "relative-file", _spec(model={"source": "file://models/x"}), "spec.model.source", "should match"
    ),
    InvalidCase(
        "negative-min-replicas",
        _spec(autoscaling={"minReplicas": -1}),
        "spec.autoscaling.minReplicas",
        "should be greater than or equal to 0",
    ),
    InvalidCase(
        "zero-worker-idle-timeout",
        _spec(autoscaling={"workerIdleTimeoutSeconds": 0}),
        "spec.autoscaling.workerIdleTimeoutSeconds",
        "should be greater than or equal to 1",
    ),
    InvalidCase(
        "negative-gpus",
        _spec(runtime={"gpus": -1}),
        "spec.runtime.gpus",
        "should be greater than or equal to 0",
    ),
    InvalidCase(
        "zero-max-replicas",
        _spec(autoscaling={"minReplicas": 0, "maxReplicas": 0}),
        "spec.autoscaling.maxReplicas",
        "should be greater than or equal to 1",
    ),
    InvalidCase("unknown-model-field", _spec(model={"foo": 1}), "spec.model.foo", "unknown field"),
    InvalidCase("unknown-spec-field", _spec(replicas=3), "spec.replicas", "unknown field"),
    InvalidCase("bad-task", _spec(model={"task": "translate"}), "spec.model.task", "Unsupported value"),
    InvalidCase("bad-dtype", _spec(model={"dtype": "int4"}), "spec.model.dtype", "Unsupported value"),
    InvalidCase(
        "beams-without-beam",
        _spec(model={"generation": {"strategy": "greedy", "numBeams": 4}}),
        "spec.model.generation.numBeams",
        "numBeams is only allowed with strategy beam",
        cel=True,
    ),
    InvalidCase(
        "topk-without-sample",
        _spec(model={"generation": {"strategy": "beam", "topK": 40}}),
        "spec.model.generation.topK",
        "topK is only allowed with strategy sample",
        cel=True,
    ),
    InvalidCase(
        "topp-over-1",
        _spec(model={"generation": {"strategy": "sample", "topP": 1.5}}),
        "spec.model.generation.topP",
        "should be less than or equal to 1",
    ),
    InvalidCase(
        "zero-temperature",
        _spec(model={"generation": {"strategy": "sample", "temperature": 0}}),
        "spec.model.generation.temperature",
        "should be greater than 0",
    ),
    InvalidCase("bad-cpu", _spec(runtime={"cpu": "two"}), "spec.runtime.cpu", "should match"),
    InvalidCase("negative-memory", _spec(runtime={"memory": "-1Gi"}), "spec.runtime.memory", "should match"),
    InvalidCase(
        "gpu-type-on-cpu",
        _spec(runtime={"gpus": 0, "gpuType": "NVIDIA-L4"}),
        "spec.runtime.gpuType",
        "gpuType needs gpus > 0",
        cel=True,
    ),
    InvalidCase(
        "rate-limit-without-keys",
        _spec(serving={"rateLimitPerMinute": 60}),
        "spec.serving.rateLimitPerMinute",
        "needs apiKeySecretRef",
        cel=True,
    ),
    InvalidCase(
        "secret-ref-without-key",
        _spec(serving={"apiKeySecretRef": {"name": "keys"}}),
        "spec.serving.apiKeySecretRef.key",
        "Required value",
    ),
    InvalidCase(
        "max-new-tokens-over-limit",
        _spec(model={"generation": {"maxNewTokens": 2048}}, serving={"maxTokens": 1024}),
        "spec.model.generation.maxNewTokens",
        "must not exceed serving.maxTokens",
        cel=True,
    ),
    InvalidCase(
        "target-over-max-ongoing",
        _spec(serving={"maxOngoingRequests": 4}, autoscaling={"targetOngoingRequests": 8}),
        "spec.autoscaling.targetOngoingRequests",
        "must not exceed serving.maxOngoingRequests",
        cel=True,
    ),
    InvalidCase(
        "int8-on-gpu",
        _spec(model={"quantization": "int8"}, runtime={"gpus": 1}),
        "spec.model.quantization",
        "runs on CPU only",
        cel=True,
    ),
    InvalidCase(
        "int8-float16",
        _spec(model={"quantization": "int8", "dtype": "float16"}),
        "spec.model.quantization",
        "needs dtype auto or float32",
        cel=True,
    ),
    InvalidCase(
        "vllm-engine-for-embed",
        _spec(model={"engine": "vllm", "task": "embed"}),
        "spec.model.engine",
        "engine vllm serves task generate",
        cel=True,
    ),
    InvalidCase(
        "accuracy-gate-on-generate",
        _spec(
            rollout={"qualityGate": {"configMapRef": {"name": "eval", "key": "data"}, "metric": "accuracy"}}
        ),
        "spec.rollout.qualityGate.metric",
        "accuracy needs task classify",
        cel=True,
    ),
    InvalidCase(
        "standby-without-zone",
        _spec(failover={"standby": {"enabled": True}}),
        "spec.failover.standby.zone",
        "zone is required when standby is enabled",
        cel=True,
    ),
    InvalidCase(
        "redis-without-port",
        _spec(failover={"gcsFaultTolerance": {"redisAddress": "redis"}}),
        "spec.failover.gcsFaultTolerance.redisAddress",
        "should match",
    ),
    InvalidCase("missing-model", _spec(model=DELETE), "spec.model", "Required value"),
    InvalidCase(
        "bad-rollout-strategy",
        _spec(rollout={"strategy": "BlueGreen"}),
        "spec.rollout.strategy",
        "Unsupported value",
    ),
    InvalidCase(
        "error-rate-over-1",
        _spec(rollout={"analysis": {"maxErrorRate": 1.5}}),
        "spec.rollout.analysis.maxErrorRate",
        "should be less than or equal to 1",
    ),
    InvalidCase(
        "exists-toleration-with-value",
        _spec(runtime={"tolerations": [{"key": "gpu", "operator": "Exists", "value": "x"}]}),
        "spec.runtime.tolerations[0].value",
        "value must be empty when operator is Exists",
        cel=True,
    ),
    InvalidCase(
        "toleration-seconds-without-noexecute",
        _spec(runtime={"tolerations": [{"key": "gpu", "effect": "NoSchedule", "tolerationSeconds": 30}]}),
        "spec.runtime.tolerations[0].tolerationSeconds",
        "tolerationSeconds is only allowed with effect NoExecute",
        cel=True,
    ),
    InvalidCase(
        "topp-without-sample",
        _spec(model={"generation": {"topP": 0.9}}),
        "spec.model.generation.topP",
        "topP is only allowed with strategy sample",
        cel=True,
    ),
    InvalidCase(
        "zero-history",
        _spec(rollout={"revisionHistoryLimit": 0}),
        "spec.rollout.revisionHistoryLimit",
        "should be greater than or equal to 1",
    ),
    InvalidCase(
        "name-too-long",
        {"metadata": {"name": "a" * 41}},
        "metadata.name",
        "metadata.name must be at most 40 characters",
        cel=True,
    ),
    InvalidCase(
        "name-not-a-service-name",
        {"metadata": {"name": "model.v2"}},
        "metadata.name",
        "it names the model's Service, an RFC 1035 label",
        cel=True,
    ),
)
