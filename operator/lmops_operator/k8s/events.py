"""Kubernetes Events on the LanguageModel: what ``kubectl describe lm`` shows as the operator's steps.

Events go out through ``EventSink``, in the background and in order, as client-go's event recorder does: a
reconcile's status patch is not kept waiting behind the events that describe it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any

from lmops_operator.k8s.client import Kube, KubeError
from lmops_operator.k8s.resources import EVENT

log = logging.getLogger(__name__)
COMPONENT = "lmops-operator"
MAX_MESSAGE = 1024


def event_body(
    involved: dict[str, Any], kind: str, reason: str, message: str, now: datetime
) -> dict[str, Any]:
    meta = involved.get("metadata") or {}
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name', 'lm')}.", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": kind,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "source": {"component": COMPONENT},
        "reportingComponent": f"lmops.io/{COMPONENT}",
        "reportingInstance": os.environ.get("HOSTNAME") or socket.gethostname(),
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def post_event(
    kube: Kube, involved: dict[str, Any], kind: str, reason: str, message: str, now: datetime
) -> None:
    """Best effort: a failed event is logged, never allowed to fail the reconcile."""
    namespace = (involved.get("metadata") or {}).get("namespace") or "default"
    try:
        kube.create(EVENT.collection(namespace), event_body(involved, kind, reason, message, now))
    except KubeError as exc:
        log.warning("could not post event %s: %s", reason, exc)


class EventSink:
    """One task posting queued events in order; ``emit`` never waits for the API server."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._queue: asyncio.Queue[tuple[dict[str, Any], str, str, str, datetime]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._post(), name="lmops-events")

    def emit(self, involved: dict[str, Any], kind: str, reason: str, message: str, now: datetime) -> None:
        self._queue.put_nowait((involved, kind, reason, message, now))

    async def _post(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await asyncio.to_thread(post_event, self.kube, *item)
            finally:
                self._queue.task_done()

    async def stop(self, drain_s: float = 5.0) -> None:
        """Post what is queued (for at most ``drain_s``), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_s)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
