"""Thin kopf wiring: every trigger ends in ``k8s.reconcile.reconcile`` for one LanguageModel.

Handlers are registered into a registry built per operator instance (not kopf's global one), so tests can
run an operator in-process with their own context, and a restart is a new registry, as in production.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from lmops_operator.api import GROUP, KIND, PLURAL, VERSION
from lmops_operator.k8s.reconcile import Outcome, ReconcileContext, reconcile
from lmops_operator.names import MODEL_LABEL

log = logging.getLogger(__name__)
TIMER_INTERVAL_S = 5.0
RETRY_DELAY_S = 10.0
# With a rollout under way but no time-based step due, check again this often anyway.
IDLE_RECHECK_S = 60.0
STORAGE_PREFIX = GROUP


def operator_settings(ctx: ReconcileContext) -> kopf.OperatorSettings:
    """kopf keeps its bookkeeping in lmops.io/ annotations (our status schema has no room for it) and
    posts no events of its own: the reconcile posts the meaningful ones."""
    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=STORAGE_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=STORAGE_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.enabled = False
    if ctx.settings.peering_name is not None:
        settings.peering.name = ctx.settings.peering_name
        settings.peering.mandatory = True
        settings.peering.clusterwide = ctx.settings.clusterwide
        settings.peering.standalone = False
    else:
        settings.peering.standalone = True
    return settings


def _rollout_active(status: Mapping[str, Any], **_: Any) -> bool:
    rollout = status.get("rollout")
    standby = status.get("standby")
    # A standby countdown (primary unready, switch due at a set time) needs the timer as a rollout does.
    counting = isinstance(standby, Mapping) and bool(standby.get("primaryUnreadySince"))
    return bool(status.get("canaryRevision")) or (isinstance(rollout, Mapping) and bool(rollout)) or counting


def build_registry(
    ctx: ReconcileContext, login: Callable[[], kopf.ConnectionInfo] | None = None
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    due: dict[str, float] = {}

    async def run(namespace: str, name: str) -> Outcome:
        try:
            outcome = await reconcile(ctx, namespace, name)
        except Exception as exc:
            log.exception("reconcile of %s/%s failed", namespace, name)
            raise kopf.TemporaryError(f"reconcile failed: {exc}", delay=RETRY_DELAY_S) from exc
        key = f"{namespace}/{name}"
        due[key] = time.monotonic() + (
            outcome.requeue_after if outcome.requeue_after is not None else IDLE_RECHECK_S
        )
        if outcome.permanent_error is not None:
            raise kopf.PermanentError(outcome.permanent_error)
        return outcome

    if login is not None:
        login_fn = login

        @kopf.on.login(registry=registry)
        def _login(**_: Any) -> kopf.ConnectionInfo:
            return login_fn()

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    async def language_model_changed(namespace: str | None, name: str, **_: Any) -> None:
        await run(namespace or "default", name)

    @kopf.on.event("ray.io", "v1", "rayservices", labels={MODEL_LABEL: kopf.PRESENT}, registry=registry)
    async def ray_service_event(body: Mapping[str, Any], type: str | None, **_: Any) -> None:
        """KubeRay changed its status (or someone edited ours): reconcile the owning model."""
        meta = body.get("metadata") or {}
        owner = next(
            (
                ref
                for ref in meta.get("ownerReferences") or []
                if ref.get("controller")
                and ref.get("kind") == KIND
                and ref.get("apiVersion", "").startswith(GROUP)
            ),
            None,
        )
        if owner is None or not meta.get("namespace"):
            return
        try:
            await run(str(meta["namespace"]), str(owner["name"]))
        except (kopf.TemporaryError, kopf.PermanentError) as exc:
            # Event handlers are not retried by kopf; the model's own handlers and timer carry on.
            log.warning("reconcile after RayService %s event: %s", type, exc)

    @kopf.timer(GROUP, VERSION, PLURAL, interval=TIMER_INTERVAL_S, when=_rollout_active, registry=registry)
    async def rollout_tick(namespace: str | None, name: str, **_: Any) -> None:
        """A rollout waits on time (step pauses, analysis intervals): reconcile when the planner said so."""
        at = due.get(f"{namespace}/{name}")
        if at is None or time.monotonic() >= at:
            await run(namespace or "default", name)

    return registry
