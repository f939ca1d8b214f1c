"""Thin wiring: kopf keeps the peering between replicas and the credentials; the work queue runs reconciles.

Every trigger queues one LanguageModel: the operator's watches (the model or one of its children changed,
``k8s.cache``) and the planner's own "look again in N seconds" (a rollout step, an analysis interval, a
retry). kopf has no handler on LanguageModels, so it neither watches them a second time nor writes to them
(no finalizers, no bookkeeping annotations). The registry is built per operator instance (not kopf's
global one), so tests can run an operator in-process, and a restart is a new registry, as in production.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from lmops_operator.k8s.reconcile import ReconcileContext, reconcile
from lmops_operator.k8s.workqueue import WorkQueue

log = logging.getLogger(__name__)
RETRY_DELAY_S = 10.0


def operator_settings(ctx: ReconcileContext) -> kopf.OperatorSettings:
    """kopf posts no events of its own (the reconcile posts the meaningful ones) and keeps the peering."""
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False
    if ctx.settings.peering_name is not None:
        settings.peering.name = ctx.settings.peering_name
        settings.peering.mandatory = True
        settings.peering.clusterwide = ctx.settings.clusterwide
        settings.peering.standalone = False
    else:
        settings.peering.standalone = True
    return settings


def runner(ctx: ReconcileContext, queue: WorkQueue) -> Callable[[str, str, bool], Awaitable[None]]:
    """The work queue's job for one model: reconcile, then queue it again when the planner asked to look
    again; a failure is retried after RETRY_DELAY_S."""

    async def run(namespace: str, name: str, timed: bool) -> None:
        try:
            outcome = await reconcile(ctx, namespace, name, timed=timed)
        except Exception:
            log.exception("reconcile of %s/%s failed; again in %.0f s", namespace, name, RETRY_DELAY_S)
            queue.add_later(RETRY_DELAY_S, namespace, name)
            return
        if outcome.requeue_after is not None:
            queue.add_later(outcome.requeue_after, namespace, name)
        if outcome.permanent_error is not None:
            log.warning("%s/%s refused: %s", namespace, name, outcome.permanent_error)

    return run


def build_registry(login: Callable[[], kopf.ConnectionInfo] | None = None) -> kopf.OperatorRegistry:
    """kopf's part: credentials (re-read on every login, so rotated tokens are picked up)."""
    registry = kopf.OperatorRegistry()

    if login is not None:
        login_fn = login

        @kopf.on.login(registry=registry)
        def _login(**_: Any) -> kopf.ConnectionInfo:
            return login_fn()

    return registry
