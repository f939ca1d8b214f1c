"""One reconcile of one LanguageModel: read the world, plan, apply what changed, write status and events.

The only side-effecting step between the work queue and the pure planner. The model and its children come
from the watch caches (``k8s.cache``), never from a GET, so a reconcile with nothing to do sends no request at
all; every write's response goes back into the caches. Children are compared with what was last applied and
only those that differ are applied; the status is merge-patched once, with only the fields that differ;
events come after the status, one per kind of change (``Created``/``Updated`` children in one event), and
phase events only when the phase changes, so an unchanged state repeats none.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from lmops_operator import observability
from lmops_operator.api import (
    InvalidLanguageModel,
    LanguageModel,
    LanguageModelStatus,
    dump_status,
    load_language_model,
)
from lmops_operator.api.annotations import consumed_patch, read_controls
from lmops_operator.api.base import SecretKeyRef
from lmops_operator.api.status import QualityGateResult
from lmops_operator.k8s.cache import Caches
from lmops_operator.k8s.client import Kube, KubeError
from lmops_operator.k8s.diff import merge_patch, needs_apply, with_applied_hash
from lmops_operator.k8s.events import EventSink, post_event
from lmops_operator.k8s.ray_clusters import sync_ray_clusters
from lmops_operator.k8s.resources import (
    CONFIG_MAP,
    CONTROLLER_REVISION,
    LANGUAGE_MODEL,
    RAY_SERVICE,
    SECRET,
    resource_of,
)
from lmops_operator.metrics_source import MetricsSource
from lmops_operator.names import REVISION_LABEL, ray_service_name
from lmops_operator.planning.children import ObservedChildren, owned_by
from lmops_operator.planning.decide import BrokenChildren, PolicyViolation
from lmops_operator.planning.metrics import MetricsSnapshot
from lmops_operator.planning.plan import (
    Observed,
    Plan,
    degraded_status,
    failed_status,
    plan,
    utcnow,
)
from lmops_operator.planning.revision import revision_data, revision_hash
from lmops_operator.planning.standby import standby_ray_service_name
from lmops_operator.planning.traffic import Event
from lmops_operator.quality_gate import Evaluator, gate_waits, run_gate_if_due
from lmops_operator.settings import Settings

log = logging.getLogger(__name__)
# With a rollout under way but no time-based step due, check again this often anyway.
IDLE_RECHECK_S = 60.0
LEGACY_FINALIZER = "lmops.io/finalizer"


@dataclass
class ReconcileContext:
    """What every reconcile shares: API client, caches, settings, metrics source and per-model locks."""

    kube: Kube
    caches: Caches
    settings: Settings
    metrics_source: MetricsSource | None = None
    # Builds the quality gate's evaluator for a model (in a cluster: through its Router) and one of its API
    # keys (None without apiKeySecretRef); no evaluator: the gate reports Inconclusive and the rollout waits.
    evaluator_for: Callable[[LanguageModel, str | None], Evaluator] | None = None
    clock: Callable[[], datetime] = utcnow
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    # Posts events in the background; without one (a reconcile run on its own) they are posted inline.
    events: EventSink | None = None
    # namespace/name -> the cache versions its last reconcile left behind (see ``reconcile``)
    settled: dict[str, tuple[tuple[str, str, int], ...]] = field(default_factory=dict)

    def lock(self, namespace: str, name: str) -> asyncio.Lock:
        return self.locks.setdefault(f"{namespace}/{name}", asyncio.Lock())


@dataclass(frozen=True)
class Outcome:
    """What kopf needs to know: retry never (permanent), or check again after ``requeue_after`` seconds."""

    writes: int = 0
    requeue_after: float | None = None
    permanent_error: str | None = None
    phase: str | None = None


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def rolling_out_beside_stable(status: LanguageModelStatus) -> bool:
    """A rollout with a stable revision to compare against: what canary analysis reads live metrics for. A
    first deploy has none, so it needs neither metrics nor a poll."""
    return status.rollout is not None and bool(status.stable_revision)


async def _read_metrics(ctx: ReconcileContext, lm: LanguageModel) -> MetricsSnapshot | None:
    """Router counters, only while a canary is analysed against a stable revision: no HTTP call for a
    model at rest or in its first deploy (nothing to compare; at a thousand models deploying at once these
    reads were most of the operator's work)."""
    status = lm.status
    if ctx.metrics_source is None or status is None or not rolling_out_beside_stable(status):
        return None
    try:
        return await ctx.metrics_source.read(lm)
    except Exception:
        log.exception("metrics source failed for %s/%s", lm.metadata.namespace, lm.metadata.name)
        return None


async def _quality_gate(
    ctx: ReconcileContext, lm: LanguageModel, revisions: Sequence[Mapping[str, Any]], now: datetime
) -> QualityGateResult | None:
    """Run the quality gate when the rollout waits for it (blocking evaluation, so off the event loop)."""
    if not gate_waits(lm.spec, lm.status):
        return None
    namespace = lm.metadata.namespace or "default"
    data: dict[str, Mapping[str, Any]] = {}
    for obj in revisions:
        label = ((obj.get("metadata") or {}).get("labels") or {}).get(REVISION_LABEL)
        if label and isinstance(obj.get("data"), Mapping):
            data[label] = obj["data"]
    target_data = revision_data(lm.spec)
    target = revision_hash(target_data)
    data[target] = target_data

    def read_config_map(name: str, key: str) -> str | None:
        try:
            config_map = ctx.kube.get(CONFIG_MAP.item(namespace, name)) or {}
        except KubeError as exc:  # e.g. RBAC without configmaps: the gate waits and the log says why
            log.warning("quality gate cannot read ConfigMap %s/%s: %s", namespace, name, exc)
            return None
        value = (config_map.get("data") or {}).get(key)
        return value if isinstance(value, str) else None

    evaluator = (
        ctx.evaluator_for(lm, gate_api_key(ctx.kube, namespace, lm.spec.serving.api_key_secret_ref))
        if ctx.evaluator_for is not None
        else None
    )
    previous = lm.status or LanguageModelStatus()
    result: QualityGateResult | None = await asyncio.to_thread(
        run_gate_if_due, lm.spec, previous, target, data, read_config_map, evaluator, now
    )
    return result


def gate_api_key(kube: Kube, namespace: str, ref: SecretKeyRef | None) -> str | None:
    """The quality gate's calls pass the Router's API-key check like any client's, with the first key of
    spec.serving.apiKeySecretRef. Reading it needs the chart's rbac.secretReads; without it the gate's calls
    get 401 and the gate stays Inconclusive with that reason in status."""
    if ref is None:
        return None
    try:
        secret = kube.get(SECRET.item(namespace, ref.name)) or {}
    except KubeError as exc:
        log.warning("quality gate cannot read Secret %s/%s: %s", namespace, ref.name, exc)
        return None
    encoded = (secret.get("data") or {}).get(ref.key)
    if not isinstance(encoded, str):
        return None
    lines = base64.b64decode(encoded).decode("utf-8", "replace").splitlines()
    return next((line.strip() for line in lines if line.strip()), None)


async def _patch_status(ctx: ReconcileContext, body: Mapping[str, Any], status: LanguageModelStatus) -> int:
    meta = body["metadata"]
    patch = merge_patch(body.get("status") or {}, dump_status(status))
    if not patch:
        return 0
    path = LANGUAGE_MODEL.item(meta["namespace"], meta["name"]) + "/status"
    ctx.caches.remember(await _call(ctx.kube.merge_patch, path, {"status": patch}))
    return 1


def _previous_status(body: Mapping[str, Any]) -> LanguageModelStatus:
    """The stored status, or an empty one when it cannot be parsed (it is then rewritten whole)."""
    try:
        return LanguageModelStatus.model_validate(body.get("status") or {})
    except ValueError:
        return LanguageModelStatus()


def _generation(body: Mapping[str, Any]) -> int | None:
    value = (body.get("metadata") or {}).get("generation")
    return value if isinstance(value, int) else None


async def _refuse(ctx: ReconcileContext, body: Mapping[str, Any], reason: str, message: str) -> Outcome:
    """A spec the operator will not act on: Failed status and one Warning event per distinct reason."""
    now = ctx.clock()
    previous = _previous_status(body)
    status = failed_status(previous, _generation(body), reason, message, now)
    old_ready = next((c for c in previous.conditions or [] if c.type == "Ready"), None)
    writes = await _patch_status(ctx, body, status)
    if old_ready is None or old_ready.reason != reason or old_ready.message != message:
        await _emit(ctx, body, ("Warning", reason, message), now)
        writes += 1
    return Outcome(writes=writes, permanent_error=f"{reason}: {message}", phase="Failed")


async def _degrade(ctx: ReconcileContext, body: Mapping[str, Any], reason: str, message: str) -> Outcome:
    """Children the planner cannot build on: Degraded with the reason, children left alone."""
    now = ctx.clock()
    previous = _previous_status(body)
    status = degraded_status(previous, _generation(body), reason, message, now)
    writes = await _patch_status(ctx, body, status)
    old = next((c for c in previous.conditions or [] if c.type == "Degraded"), None)
    if old is None or old.reason != reason or old.message != message:
        await _emit(ctx, body, ("Warning", reason, message), now)
        writes += 1
    return Outcome(writes=writes, phase="Degraded")


async def _apply(
    ctx: ReconcileContext, lm: LanguageModel, result: Plan, children: ObservedChildren
) -> tuple[int, list[Event]]:
    """Apply what differs from the cached children; returns the writes and the events that say so."""
    namespace = lm.metadata.namespace or "default"
    writes = 0
    done: dict[str, list[str]] = {"Created": [], "Updated": []}
    for desired in result.objects:
        resource = resource_of(desired)
        name = desired["metadata"]["name"]
        live = children.get(resource.kind, name)
        if not needs_apply(desired, live):
            continue
        applied = await _call(ctx.kube.apply, resource.item(namespace, name), with_applied_hash(desired))
        ctx.caches.remember(applied)
        writes += 1
        verb = "Created" if live is None else "Updated"
        if resource.kind == "ControllerRevision":
            created = (applied.get("metadata") or {}).get("creationTimestamp")
            _fix_created_at(result.status, result.target_revision, created)
            continue  # RevisionCreated already says it
        log.info("%s %s %s/%s", verb.lower(), resource.kind, namespace, name)
        done[verb].append(f"{resource.kind} {name}")
    events: list[Event] = [
        ("Normal", child_event_reason(verb, names), f"{', '.join(names)} {verb.lower()}")
        for verb, names in done.items()
        if names
    ]
    for name in result.stale_revisions:
        if await _call(ctx.kube.delete, CONTROLLER_REVISION.item(namespace, name)):
            writes += 1
            events.append(
                ("Normal", "RevisionPruned", f"ControllerRevision {name} deleted (past revisionHistoryLimit)")
            )
    return writes, events


def child_event_reason(verb: str, names: list[str]) -> str:
    """``RayServiceUpdated`` for one child, ``ChildrenCreated`` for several: one event per verb."""
    return f"{names[0].split()[0]}{verb}" if len(names) == 1 else f"Children{verb}"


def _fix_created_at(status: LanguageModelStatus, revision: str, created: Any) -> None:
    """Use the server's creationTimestamp for a new revision, so the next reconcile sees no difference."""
    if not isinstance(created, str):
        return
    stamp = datetime.fromisoformat(created.replace("Z", "+00:00"))
    for summary in status.revisions or []:
        if summary.name == revision:
            summary.created_at = stamp


async def reconcile(ctx: ReconcileContext, namespace: str, name: str, *, timed: bool = False) -> Outcome:
    """Reconcile LanguageModel ``namespace/name``; API errors propagate (the work queue retries them).

    A model whose cached world is exactly what its last reconcile left behind is not planned again for an
    event: the watch echoes of the operator's own writes can arrive before the writes' responses and queue
    the model once more, and planning it would only confirm that nothing is to be done. A ``timed``
    reconcile (the planner asked to look again at this time: a rollout step, an analysis, a countdown) is
    always planned, since what changed then is the clock or the metrics, which no fingerprint holds.
    """
    key = f"{namespace}/{name}"
    async with ctx.lock(namespace, name):
        start = ctx.caches.fingerprint(namespace, name)
        if not timed and ctx.settled.get(key) == start:
            observability.RECONCILES_SKIPPED.inc()
            return Outcome()
        ctx.settled.pop(key, None)
        started = time.monotonic()
        try:
            outcome = await _reconcile(ctx, namespace, name)
        except Exception:
            observability.RECONCILE_ERRORS.inc()
            raise
        finally:
            observability.RECONCILE_DURATION.observe(time.monotonic() - started)
            observability.RECONCILES.inc()
        ctx.settled[key] = ctx.caches.settled(namespace, name, start)
        return outcome


async def _reconcile(ctx: ReconcileContext, namespace: str, name: str) -> Outcome:
    body = ctx.caches.model(namespace, name)
    if body is None:
        return Outcome()
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return Outcome(writes=await _release_legacy_finalizer(ctx, body))
    if await _release_legacy_finalizer(ctx, body):
        body = ctx.caches.model(namespace, name) or body
    try:
        lm = load_language_model(body)
    except InvalidLanguageModel as exc:
        return await _refuse(ctx, body, "InvalidSpec", str(exc))
    uid = lm.metadata.uid
    children = ctx.caches.children(namespace, name)
    ray_service = children.get(RAY_SERVICE.kind, ray_service_name(name))
    if ray_service is not None and not owned_by(ray_service, uid):
        return await _degrade(
            ctx,
            body,
            "RayServiceNotOwned",
            f"RayService {ray_service_name(name)} exists but is not owned by this LanguageModel",
        )
    standby_name = standby_ray_service_name(name)
    standby_read = children.get(RAY_SERVICE.kind, standby_name)
    standby = standby_read if standby_read is not None and owned_by(standby_read, uid) else None
    revisions = children.of_kind(CONTROLLER_REVISION.kind, uid)
    annotations = lm.metadata.annotations or {}
    now = ctx.clock()
    observed = Observed(
        now=now,
        ray_service=ray_service,
        controller_revisions=revisions,
        metrics=await _read_metrics(ctx, lm),
        controls=read_controls(annotations),
        quality=await _quality_gate(ctx, lm, revisions, now),
        standby_ray_service=standby,
    )
    try:
        result = plan(lm, observed, ctx.settings)
    except PolicyViolation as exc:
        return await _refuse(ctx, body, exc.reason, exc.message)
    except BrokenChildren as exc:
        return await _degrade(ctx, body, "BrokenChildren", str(exc))
    writes, events = await _apply(ctx, lm, result, children)
    if ray_service is None and writes:
        # The RayService was just created: the status describes the world as it is now (created, not yet
        # reported by KubeRay), instead of being corrected by one more patch in the next reconcile.
        children = ctx.caches.children(namespace, name)
        revisions = children.of_kind(CONTROLLER_REVISION.kind, uid)
        ray_service = children.get(RAY_SERVICE.kind, ray_service_name(name))
        status = plan(
            lm, replace(observed, ray_service=ray_service, controller_revisions=revisions), ctx.settings
        )
        result = replace(result, status=status.status)
    writes += await sync_ray_clusters(
        ctx.kube,
        ctx.caches,
        namespace,
        result.objects,
        {ray_service_name(name): observed.ray_service, standby_name: standby},
        result.obsolete_ray_services,
    )
    writes += await _patch_status(ctx, body, result.status)
    consumed = consumed_patch(annotations)
    if consumed is not None:
        ctx.caches.remember(await _call(ctx.kube.merge_patch, LANGUAGE_MODEL.item(namespace, name), consumed))
        writes += 1
    for event in [*events, *result.events]:
        await _emit(ctx, body, event, observed.now)
        writes += 1
    return Outcome(writes=writes, requeue_after=recheck_after(result), phase=result.status.phase)


def recheck_after(result: Plan) -> float | None:
    """When to reconcile again with no event: when the planner says, and during a rollout or a standby
    countdown at least every IDLE_RECHECK_S (analysis reads live metrics, which send no watch event)."""
    status = result.status
    standby = status.standby
    # A first deploy (no stable revision) waits only for the RayService's status, which is a watch event.
    rollout = rolling_out_beside_stable(status)
    waiting = bool(status.canary_revision or rollout or (standby and standby.primary_unready_since))
    idle = IDLE_RECHECK_S if waiting else None
    return min((t for t in (result.requeue_after, idle) if t is not None), default=None)


async def _emit(ctx: ReconcileContext, body: Mapping[str, Any], event: Event, now: datetime) -> None:
    kind, reason, message = event
    if ctx.events is not None:
        ctx.events.emit(dict(body), kind, reason, message, now)
    else:
        await _call(post_event, ctx.kube, dict(body), kind, reason, message, now)


async def _release_legacy_finalizer(ctx: ReconcileContext, body: Mapping[str, Any]) -> int:
    """Earlier versions let kopf put a finalizer on models in a rollout; nothing removes it now, so a model
    that still carries it is released once (else its deletion would wait forever)."""
    meta = body.get("metadata") or {}
    finalizers = list(meta.get("finalizers") or [])
    if LEGACY_FINALIZER not in finalizers:
        return 0
    ops = [
        {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
        {
            "op": "replace",
            "path": "/metadata/finalizers",
            "value": [f for f in finalizers if f != LEGACY_FINALIZER],
        },
    ]
    path = LANGUAGE_MODEL.item(str(meta.get("namespace")), str(meta.get("name")))
    ctx.caches.remember(await _call(ctx.kube.json_patch, path, ops))
    return 1
