"""Thin wiring: every trigger queues one LanguageModel, and the work queue runs ``k8s.reconcile.reconcile``.

Triggers are the operator's watches (a model or one of its children changed, ``k8s.cache``) and kopf's timer
for models whose rollout waits on time. kopf also keeps the peering between replicas and the credentials.
Handlers are registered into a registry built per operator instance (not kopf's global one), so tests can
run an operator in-process with their own context, and a restart is a new registry, as in production.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from lmops_operator.api import GROUP, PLURAL, VERSION
from lmops_operator.k8s.reconcile import ReconcileContext, reconcile
from lmops_operator.k8s.workqueue import WorkQueue

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


def runner(ctx: ReconcileContext, queue: WorkQueue) -> Callable[[str, str], Awaitable[None]]:
    """The work queue's job for one model: reconcile, remember when the planner wants to look again (the
    rollout timer reads it), retry a failure after RETRY_DELAY_S."""

    async def run(namespace: str, name: str) -> None:
        try:
            outcome = await reconcile(ctx, namespace, name)
        except Exception:
            log.exception("reconcile of %s/%s failed; again in %.0f s", namespace, name, RETRY_DELAY_S)
            queue.add_later(RETRY_DELAY_S, namespace, name)
            return
        ctx.due[f"{namespace}/{name}"] = time.monotonic() + (
            outcome.requeue_after if outcome.requeue_after is not None else IDLE_RECHECK_S
        )
        if outcome.permanent_error is not None:
            log.warning("%s/%s refused: %s", namespace, name, outcome.permanent_error)

    return run


def build_registry(
    ctx: ReconcileContext, queue: WorkQueue, login: Callable[[], kopf.ConnectionInfo] | None = None
) -> kopf.OperatorRegistry:
    """kopf's part: credentials, peering, and the rollout timer. Models and children reach the work queue
    from the operator's own watches (``k8s.cache``), not through kopf handlers."""
    registry = kopf.OperatorRegistry()

    if login is not None:
        login_fn = login

        @kopf.on.login(registry=registry)
        def _login(**_: Any) -> kopf.ConnectionInfo:
            return login_fn()

    @kopf.timer(GROUP, VERSION, PLURAL, interval=TIMER_INTERVAL_S, when=_rollout_active, registry=registry)
    async def rollout_tick(namespace: str | None, name: str, **_: Any) -> None:
        """A rollout waits on time (step pauses, analysis intervals): reconcile when the planner said so."""
        at = ctx.due.get(f"{namespace}/{name}")
        if at is None or time.monotonic() >= at:
            queue.add(namespace or "default", name)

    return registry
