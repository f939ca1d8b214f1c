"""Kubernetes Events on the LanguageModel: what ``kubectl describe lm`` shows as the operator's steps."""

from __future__ import annotations

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
