"""Helpers for the planner and builder tests: example models, fake KubeRay statuses, a reconcile loop."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from lmops_operator.api import LanguageModel, LanguageModelStatus, load_language_model
from lmops_operator.planning.plan import Observed, Plan, plan
from lmops_operator.settings import Settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
T0 = datetime(2026, 1, 1, tzinfo=UTC)
UID = "0b7f7c2e-0000-4000-8000-000000000001"
SETTINGS = Settings(default_runtime_image="ghcr.io/lmops/runtime:test")


def example(name: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((REPO / "examples" / f"{name}.yaml").read_text())
    return body


def model(
    body: dict[str, Any], *, status: LanguageModelStatus | None = None, generation: int = 1
) -> LanguageModel:
    body = copy.deepcopy(body)
    meta = body.setdefault("metadata", {})
    meta.setdefault("namespace", "models")
    meta.setdefault("uid", UID)
    meta["generation"] = generation
    lm = load_language_model(body)
    lm.status = status
    return lm


def app_status(apps: dict[str, str], messages: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        name: {"status": state, "message": (messages or {}).get(name, "")} for name, state in apps.items()
    }


def kuberay_status(
    apps: dict[str, str],
    *,
    ready: bool = True,
    upgrading: bool = False,
    workers: int = 1,
    pending_apps: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A RayService status as KubeRay v1.7 writes it."""
    status: dict[str, Any] = {
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": "NonZeroServeEndpoints" if ready else "ZeroServeEndpoints",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            },
            {
                "type": "UpgradeInProgress",
                "status": "True" if upgrading else "False",
                "reason": "PendingClusterExists" if upgrading else "NoPendingCluster",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            },
        ],
        "numServeEndpoints": 1 if ready else 0,
        "activeServiceStatus": {
            "rayClusterName": "x-abcde",
            "applicationStatuses": app_status(apps),
            "rayClusterStatus": {"readyWorkerReplicas": workers},
        },
    }
    if pending_apps is not None:
        status["pendingServiceStatus"] = {
            "rayClusterName": "x-fghij",
            "applicationStatuses": app_status(pending_apps),
        }
    return status


def running(result: Plan, *, failed: frozenset[str] = frozenset(), **kwargs: Any) -> dict[str, Any]:
    """KubeRay's status once every app of ``result`` is up (``failed`` revisions DEPLOY_FAILED)."""
    apps = {"lm": "RUNNING"}
    for revision in result.weights:
        apps[f"rev-{revision}"] = "DEPLOY_FAILED" if revision in failed else "RUNNING"
    return kuberay_status(apps, **kwargs)


def by_kind(result: Plan, kind: str) -> list[dict[str, Any]]:
    return [o for o in result.objects if o["kind"] == kind]


class World:
    """The cluster as the planner sees it, advanced by applying plans: children are stored as applied."""

    def __init__(self, body: dict[str, Any], settings: Settings = SETTINGS) -> None:
        self.body = copy.deepcopy(body)
        self.settings = settings
        self.status: LanguageModelStatus | None = None
        self.ray_service: dict[str, Any] | None = None
        self.revisions: dict[str, dict[str, Any]] = {}
        self.now = T0
        self.generation = 1

    def edit(self, change: dict[str, Any]) -> None:
        from tests.support.languagemodel_cases import merge

        self.body = merge(self.body, change)
        self.generation += 1

    def step(self, kuberay: dict[str, Any] | None = None, seconds: float = 10.0) -> Plan:
        """One reconcile: plan against the stored world, then store what it applied and its status."""
        self.now += timedelta(seconds=seconds)
        if kuberay is not None and self.ray_service is not None:
            self.ray_service["status"] = kuberay
        lm = model(self.body, status=self.status, generation=self.generation)
        result = plan(
            lm,
            Observed(
                now=self.now, ray_service=self.ray_service, controller_revisions=list(self.revisions.values())
            ),
            self.settings,
        )
        for obj in result.objects:
            if obj["kind"] == "RayService":
                status = (self.ray_service or {}).get("status")
                self.ray_service = copy.deepcopy(obj)
                if status is not None:
                    self.ray_service["status"] = status
            elif obj["kind"] == "ControllerRevision":
                name = obj["metadata"]["name"]
                stored = copy.deepcopy(obj)
                created = (self.revisions.get(name) or {}).get("metadata", {}).get("creationTimestamp")
                stored["metadata"]["creationTimestamp"] = created or self.now.strftime("%Y-%m-%dT%H:%M:%SZ")
                self.revisions[name] = stored
        for name in result.stale_revisions:
            self.revisions.pop(name, None)
        self.status = result.status
        return result
