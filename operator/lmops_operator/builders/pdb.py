"""PodDisruptionBudget for the worker pods: a node drain takes model replicas down one at a time."""

from __future__ import annotations

from typing import Any

from lmops_operator.api import LanguageModel
from lmops_operator.builders.meta import child_metadata
from lmops_operator.names import MODEL_LABEL, ray_service_name

# KubeRay labels every pod with its node type.
RAY_NODE_TYPE_LABEL = "ray.io/node-type"


def build_pdb(lm: LanguageModel) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": child_metadata(lm, f"{ray_service_name(lm.metadata.name)}-workers"),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {MODEL_LABEL: lm.metadata.name, RAY_NODE_TYPE_LABEL: "worker"}},
        },
    }
