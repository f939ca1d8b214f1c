"""The local reconciler: one LanguageModel on a local Ray, reconciled by the operator's own ``decide``.

Each ``reconcile`` reads the local Serve application statuses and the Router's /stats into an
``ObservedState``, calls ``planning.decide.decide`` exactly as the operator does, deploys the Decision's
serve config, then writes its status and revision history to the state file (which plays the revision
store). ``run`` repeats that until the rollout settles.

Retiring a revision drains it first: the Router is reconfigured to stop sending it traffic while its
application still runs, and the application is deleted only once the Router reports the new weights, so
no call is routed to a revision that is already going away.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lmops_operator.api import LanguageModel, LanguageModelStatus, load_language_model
from lmops_operator.api.annotations import Controls
from lmops_operator.api.status import QualityGateResult
from lmops_operator.local import controls as local_controls
from lmops_operator.local import state as store
from lmops_operator.metrics_source import read_router_stats
from lmops_operator.planning import status as st
from lmops_operator.planning.decide import ObservedState, StoredRevision, decide
from lmops_operator.planning.metrics import MetricsSnapshot
from lmops_operator.planning.revision import revision_data, revision_hash
from lmops_operator.planning.traffic import Event, TrafficDecision
from lmops_operator.quality_gate import Evaluator, RouterEvaluator, run_gate_if_due
from lmops_operator.router_client import read_weights, stats_url
from lmops_runtime import config as contract
from lmops_runtime import local as runtime_local

# Longest wait for the Router to report new weights before a retired revision's application is deleted.
DRAIN_TIMEOUT_S = 15.0
# Local reconciles run at least this often while something is moving (the operator uses requeue_after).
LOCAL_POLL_S = 1.0


class LocalRolloutError(RuntimeError):
    """The model cannot be served locally as asked (the message says why)."""


@dataclass(frozen=True)
class LocalStep:
    """The outcome of one reconcile."""

    target: str
    decision: TrafficDecision
    status: LanguageModelStatus
    events: list[Event]
    settled: bool
    failed: str | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)


def localize(document: dict[str, Any], local_gpus: int) -> dict[str, Any]:
    """Adapt the cluster's serve config to one machine: pod-sized CPU and memory reservations would not fit
    beside each other on a laptop (two revisions at once), so replicas reserve no CPU or memory here, and
    GPUs only as far as this machine has them."""
    out: dict[str, Any] = json.loads(json.dumps(document))
    for app in out["applications"]:
        for deployment in app.get("deployments", []):
            options = dict(deployment.get("ray_actor_options") or {})
            options.pop("memory", None)
            options["num_cpus"] = 0
            gpus = int(options.get("num_gpus", 0) or 0)
            if gpus:
                options["num_gpus"] = min(gpus, local_gpus)
            deployment["ray_actor_options"] = options
    return out


def _digest(document: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def _running_replicas(apps: Mapping[str, Any]) -> int | None:
    """Model replicas Serve reports RUNNING over all revisions (None where it reports no deployments)."""
    prefix = contract.server_app_name("")
    counts = [
        int((deployment.get("replicas") or {}).get("RUNNING", 0))
        for name, app in apps.items()
        if name.startswith(prefix)
        for deployment in (app.get("deployments") or {}).values()
    ]
    return sum(counts) if counts else None


def _apps_view(apps: Mapping[str, Any]) -> st.RayServiceView:
    """Serve's application statuses as the planner reads a RayService; running replicas stand in for
    KubeRay's ready worker pods (one replica each in a cluster)."""
    states = {
        name: st.AppState(str(a.get("status", "")), str(a.get("message", ""))) for name, a in apps.items()
    }
    router = states.get(contract.ROUTER_APP)
    return st.RayServiceView(
        exists=True,
        ready=router is not None and router.status == st.RUNNING,
        apps=states,
        ready_workers=_running_replicas(apps),
    )


def _serve_apps() -> dict[str, Any]:
    """Local Serve application statuses; empty before Serve was ever started."""
    try:
        return runtime_local.status()
    except Exception:
        return {}


@dataclass
class LocalReconciler:
    """Reconciles the model recorded in the state file at ``path``; the I/O functions are injectable."""

    path: Path | None = None
    deploy: Callable[..., int] = runtime_local.deploy
    serve_apps: Callable[[], dict[str, Any]] = _serve_apps
    read_stats: Callable[[str], MetricsSnapshot | None] = read_router_stats
    router_weights: Callable[[str], dict[str, int] | None] = read_weights
    # The quality gate's evaluator; None means the local Router, pinned per revision, as in a cluster.
    evaluator: Evaluator | None = None
    now: Callable[[], datetime] = utcnow
    local_gpus: int = 0
    events: list[Event] = field(default_factory=list)

    # ---- the applied object ------------------------------------------------------------------------

    def apply(
        self,
        manifest: Mapping[str, Any],
        http_port: int,
        host: str = "127.0.0.1",
        config_maps: Mapping[str, Mapping[str, str]] | None = None,
    ) -> LanguageModel:
        """Record a (new or changed) LanguageModel manifest, as ``kubectl apply`` would; validates it."""
        lm = load_language_model({k: v for k, v in manifest.items() if k != "status"})
        current = store.load(self.path)
        if current is not None and current.name != lm.metadata.name:
            raise LocalRolloutError(
                f"model {current.name!r} is already running locally; run `lmops down` before starting "
                f"{lm.metadata.name!r} (one model per local Ray: the Router application is shared)"
            )
        body = lm.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"status"})
        if current is None:
            current = store.LocalState(manifest=body, http_port=http_port, host=host)
        else:
            current.manifest = body
        if config_maps is not None:
            current.config_maps = {k: dict(v) for k, v in config_maps.items()}
        store.save(current, self.path)
        return lm

    def state(self) -> store.LocalState:
        current = store.load(self.path)
        if current is None:
            raise LocalRolloutError("no local model: run `lmops up FILE` first")
        return current

    # ---- one reconcile -----------------------------------------------------------------------------

    def reconcile(self, controls: Controls | None = None) -> LocalStep:
        state = self.state()
        # Controls another process asked for (``lmops rollout promote`` while this one drives the loop).
        controls = local_controls.merged(controls, local_controls.take(self.path or store.state_path()))
        now = self.now()
        lm = load_language_model({**state.manifest, "status": state.status or None})
        previous = lm.status or LanguageModelStatus()
        target_data = revision_data(lm.spec)
        target = revision_hash(target_data)

        apps = self.serve_apps()
        view = _apps_view(apps)
        metrics = None
        if view.ready:
            metrics = self.read_stats(stats_url(f"http://{state.host}:{state.http_port}"))
        observed = ObservedState(
            now=now,
            serving=view,
            deployed=_revisions_of(state.deployed_apps),
            metrics=metrics,
            controls=controls or Controls(),
            quality=self._quality_gate(lm, state, previous, target, target_data),
        )
        revisions = {
            name: StoredRevision(name, name, rev.number, rev.data, rev.created_at)
            for name, rev in state.revisions.items()
        }
        decision = decide(lm, revisions, observed)
        self._deploy(state, localize(decision.serve_config, self.local_gpus), decision.traffic)

        status = decision.status
        status.endpoint = f"http://{state.host}:{state.http_port}/v1"
        state.revisions = {
            r.revision: store.LocalRevision(
                number=r.number, data=dict(r.data), created_at=r.created_at or now
            )
            for r in decision.kept
        }
        state.status = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        store.save(state, self.path)

        events = decision.events + decision.phase_events
        self.events += events
        failed = None
        if status.stable_revision is None and target in decision.health and decision.health[target].failed:
            failed = decision.health[target].message or f"revision {target} failed"
        rollout = status.rollout
        settled = failed is None and (
            (rollout is None and status.stable_revision is not None and status.canary_revision is None)
            or (rollout is not None and rollout.state in ("Aborted", "Paused"))
        )
        return LocalStep(target, decision.traffic, status, events, settled, failed)

    def run(
        self,
        timeout_s: float,
        on_step: Callable[[LocalStep], None] | None = None,
        controls: Controls | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> LocalStep:
        """Reconcile until the rollout settles (served, aborted or paused); raise on failure or timeout."""
        deadline = time.monotonic() + timeout_s
        step = self.reconcile(controls)
        while True:
            if on_step is not None:
                on_step(step)
            if step.failed is not None:
                raise LocalRolloutError(f"revision {step.target} failed: {step.failed}")
            if step.settled:
                return step
            if time.monotonic() > deadline:
                raise LocalRolloutError(
                    f"not settled after {timeout_s:.0f} s (phase {step.status.phase}); the state is kept, "
                    "run `lmops up` again to continue or `lmops down` to stop"
                )
            wait = step.decision.requeue_after if step.decision.requeue_after is not None else LOCAL_POLL_S
            sleep(max(0.05, min(wait, LOCAL_POLL_S)))
            step = self.reconcile()

    # ---- helpers -----------------------------------------------------------------------------------

    def _deploy(self, state: store.LocalState, document: dict[str, Any], decision: TrafficDecision) -> None:
        digest = _digest(document)
        if digest == state.document_digest:
            return
        new_apps = [app["name"] for app in document["applications"]]
        retired = [name for name in state.deployed_apps if name not in new_apps]
        if retired and state.document:
            old = {app["name"]: app for app in state.document.get("applications", [])}
            keep = [old[name] for name in retired if name in old]
            interim = {**document, "applications": [*document["applications"], *keep]}
            self._deploy_document(state, interim)
            self._wait_router_weights(state, decision.weights)
        self._deploy_document(state, document)
        state.deployed_apps = new_apps
        state.document = document
        state.document_digest = digest

    def _deploy_document(self, state: store.LocalState, document: dict[str, Any]) -> None:
        try:
            port = self.deploy(document, http_port=state.http_port, host=state.host)
        except runtime_local.LocalModeError as exc:
            raise LocalRolloutError(str(exc)) from None
        state.http_port = port

    def _wait_router_weights(self, state: store.LocalState, weights: Mapping[str, int]) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        url = stats_url(f"http://{state.host}:{state.http_port}")
        while time.monotonic() < deadline:
            body = self.router_weights(url)
            if body is not None and body == dict(weights):
                return
            time.sleep(0.2)

    def _quality_gate(
        self,
        lm: LanguageModel,
        state: store.LocalState,
        previous: LanguageModelStatus,
        target: str,
        target_data: dict[str, Any],
    ) -> QualityGateResult | None:
        def read(name: str, key: str) -> str | None:
            return state.config_maps.get(name, {}).get(key)

        data = {**{name: rev.data for name, rev in state.revisions.items()}, target: target_data}
        evaluator = self.evaluator or RouterEvaluator(f"http://{state.host}:{state.http_port}")
        return run_gate_if_due(lm.spec, previous, target, data, read, evaluator, self.now())


def _revisions_of(apps: list[str]) -> list[str]:
    prefix = contract.server_app_name("")
    return [name.removeprefix(prefix) for name in apps if name.startswith(prefix)]
