"""Hypothesis strategies for valid LanguageModel specs, drawn from the generated CRD schema.

Values come from the schema itself (types, enums, bounds, patterns, optional fields), so a new field is
exercised as soon as it exists. ``repair`` then makes a drawn spec satisfy the cross-field rules (the CEL
rules); it changes as few fields as it can, so most of the drawn variety survives. Shared by the unit
property test and the control-plane test that sends the same specs to a real API server.
"""

from __future__ import annotations

import copy
import string
from typing import Any

from hypothesis import strategies as st

from lmops_operator.api.crd import structural_schema

MAX_LIST = 4


def _string(node: dict[str, Any]) -> st.SearchStrategy[str]:
    if "enum" in node:
        return st.sampled_from(node["enum"])
    lo, hi = node.get("minLength", 0), node.get("maxLength", 40)
    if "pattern" in node:
        return st.from_regex(node["pattern"], fullmatch=True).filter(lambda s: lo <= len(s) <= hi)
    return st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=lo, max_size=min(hi, lo + 24)
    )


def _number(node: dict[str, Any]) -> st.SearchStrategy[float]:
    return st.floats(
        min_value=node.get("minimum"),
        max_value=node.get("maximum"),
        exclude_min=bool(node.get("exclusiveMinimum")),
        exclude_max=bool(node.get("exclusiveMaximum")),
        allow_nan=False,
        allow_infinity=False,
    )


def from_schema(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that satisfy one structural schema node (not its CEL rules)."""
    kind = node["type"]
    if kind == "string":
        return _string(node)
    if kind == "integer":
        return st.integers(min_value=node.get("minimum", -(2**31)), max_value=node.get("maximum", 2**31))
    if kind == "number":
        return _number(node)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        items = from_schema(node["items"])
        lo = node.get("minItems", 0)
        hi = min(node.get("maxItems", MAX_LIST), max(lo, MAX_LIST))
        unique = node.get("x-kubernetes-list-type") == "set"
        return st.lists(items, min_size=lo, max_size=hi, unique=unique)
    if kind == "object" and "properties" not in node:
        keys = st.text(alphabet=string.ascii_lowercase + "./-", min_size=1, max_size=20)
        return st.dictionaries(keys, from_schema(node["additionalProperties"]), max_size=3)
    required = set(node.get("required", ()))
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, sub in node["properties"].items():
        value = from_schema(sub)
        fields[name] = value if name in required else st.one_of(st.none(), value)
    return st.fixed_dictionaries(fields).map(lambda d: {k: v for k, v in d.items() if v is not None})


def repair(spec: dict[str, Any]) -> dict[str, Any]:
    """Make a schema-valid spec satisfy the cross-field rules, changing as little as possible."""
    spec = copy.deepcopy(spec)
    model = spec["model"]
    gen = model.setdefault("generation", {})
    runtime = spec.setdefault("runtime", {})
    serving = spec.setdefault("serving", {})
    auto = spec.setdefault("autoscaling", {})
    rollout = spec.setdefault("rollout", {})
    failover = spec.setdefault("failover", {})
    task = model.get("task", "generate")
    if task == "classify" and "labels" not in model:
        model["labels"] = ["negative", "positive"]
    if task != "classify":
        model.pop("labels", None)
    if model.get("quantization") == "int8":
        model["dtype"] = "float32"
        runtime["gpus"] = 0
    if model.get("engine") == "vllm" and (task != "generate" or model.get("quantization") == "int8"):
        model.pop("engine")
    strategy = gen.get("strategy", "greedy")
    if strategy != "beam":
        gen.pop("numBeams", None)
    if strategy != "sample":
        gen.pop("topK", None)
        gen.pop("topP", None)
    if "rateLimitPerMinute" in serving and "apiKeySecretRef" not in serving:
        serving["apiKeySecretRef"] = {"name": "api-keys", "key": "keys"}
    max_tokens = serving.get("maxTokens", 4096)
    if gen.get("maxNewTokens", 128) > max_tokens:
        gen["maxNewTokens"] = max_tokens
    if runtime.get("gpus", 1) == 0:
        runtime.pop("gpuType", None)
    lo, hi = auto.get("minReplicas", 1), auto.get("maxReplicas", 1)
    if lo > hi:
        auto["minReplicas"], auto["maxReplicas"] = hi, lo
    if auto.get("targetOngoingRequests", 4.0) > serving.get("maxOngoingRequests", 32):
        auto["targetOngoingRequests"] = float(serving.get("maxOngoingRequests", 32))
    if "steps" in rollout:
        weights = sorted({step["weight"] for step in rollout["steps"]})
        pauses = [step.get("pauseSeconds") for step in rollout["steps"]]
        rollout["steps"] = [
            {"weight": w, **({"pauseSeconds": p} if p is not None else {})}
            for w, p in zip(weights, pauses, strict=False)
        ]
    gate = rollout.get("qualityGate")
    if gate is not None:
        gate["metric"] = "accuracy" if task == "classify" else "perplexity"
        if task == "embed":
            rollout.pop("qualityGate")
    standby = failover.get("standby")
    if standby is not None and standby.get("enabled") and "zone" not in standby:
        standby["zone"] = "zone-b"
    for tol in runtime.get("tolerations", []):
        if tol.get("operator") == "Exists":
            tol.pop("value", None)
        if tol.get("effect") != "NoExecute":
            tol.pop("tolerationSeconds", None)
    return spec


def spec_schema() -> dict[str, Any]:
    return structural_schema()["properties"]["spec"]


def valid_specs() -> st.SearchStrategy[dict[str, Any]]:
    """Specs (camelCase dicts, defaults mostly left out) that the API server and the models both accept."""
    return from_schema(spec_schema()).map(repair)
