"""LanguageModel documents shared by the local-Ray rollout proof and the rollback benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def canary_manifest(
    source: Path, *, name: str, max_new_tokens: int, pause_s: int, interval_s: int
) -> dict[str, Any]:
    """One replica per revision, a 25% then 60% canary, and an analysis that aborts on the first bad window.

    ``max_new_tokens`` is part of the revision: changing it alone makes a new revision of the same weights.
    """
    return {
        "apiVersion": "lmops.io/v1alpha1",
        "kind": "LanguageModel",
        "metadata": {"name": name},
        "spec": {
            "model": {"source": f"file://{source}", "generation": {"maxNewTokens": max_new_tokens}},
            "runtime": {"gpus": 0},
            "autoscaling": {"minReplicas": 1, "maxReplicas": 1},
            "rollout": {
                "steps": [{"weight": 25, "pauseSeconds": pause_s}, {"weight": 60, "pauseSeconds": pause_s}],
                "analysis": {
                    "intervalSeconds": interval_s,
                    "minRequests": 5,
                    "failureLimit": 1,
                    "maxErrorRate": 0.05,
                },
            },
        },
    }
