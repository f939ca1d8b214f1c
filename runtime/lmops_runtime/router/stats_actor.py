"""The one detached actor per Router application that sums the counters of every Router replica.

Why an actor rather than per-replica endpoints: Serve's proxy sends ``GET /stats`` to one replica, so a
replica-local answer would undercount as soon as there are two. Replicas push deltas every
``PUSH_INTERVAL_S`` (and right before answering a stats read), so the request path never waits on it.
The actor is detached so that Router replica restarts and rolling upgrades keep the totals; if it dies it is
restarted empty with a new ``epoch`` and readers treat that as a counter reset.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import ray

from lmops_runtime.router.stats import Deltas, deltas_from_wire, deltas_to_wire, merge, merge_health

NAMESPACE = "lmops"
PUSH_INTERVAL_S = 0.5
# A replica that has not pushed for this long no longer counts as live (for health and rate-limit shares).
REPLICA_LIVE_S = 10.0


def actor_name(app_name: str) -> str:
    return f"lmops-router-stats-{app_name}"


class StatsStore:
    def __init__(self) -> None:
        self.epoch = uuid.uuid4().hex
        self.started_at = time.time()
        self.totals: Deltas = {}
        self.reports: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}

    def push(
        self, replica_id: str, deltas: dict[str, dict[str, Any]], health: dict[str, dict[str, Any]]
    ) -> int:
        """Add one replica's deltas; returns how many Router replicas are live (for rate-limit shares)."""
        merge(self.totals, deltas_from_wire(deltas))
        now = time.monotonic()
        self.reports[replica_id] = (now, health)
        return self._live(now)

    def _live(self, now: float) -> int:
        for rid in [r for r, (at, _) in self.reports.items() if now - at > REPLICA_LIVE_S]:
            del self.reports[rid]
        return len(self.reports)

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        live = self._live(now)
        return {
            "epoch": self.epoch,
            "started_at": self.started_at,
            "router_replicas": live,
            "totals": deltas_to_wire(self.totals),
            "health": merge_health([health for _, health in self.reports.values()]),
        }


#: Ray's built-in resource of the head node; a tiny share of it pins an actor there.
HEAD_NODE_RESOURCE = "node:__internal_head__"


def get_or_create(app_name: str) -> Any:
    """The application's stats actor handle, creating it on first use (races resolve to one actor).

    The actor lives on the head, beside Serve's controller: placed on a worker, it died with that worker's
    pod, and the Routers' calls to the restarted actor kept timing out (the cluster tier: after a replica's
    pod was deleted, /stats answered 503 for good and the next canary sat at 25% for want of metrics).
    """
    remote_cls = ray.remote(num_cpus=0, max_restarts=-1)(StatsStore)
    return remote_cls.options(
        name=actor_name(app_name),
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        resources={HEAD_NODE_RESOURCE: 0.001},
    ).remote()


def kill(app_name: str) -> bool:
    """Remove an application's stats actor (when its Router application is deleted); False if none."""
    try:
        handle = ray.get_actor(actor_name(app_name), namespace=NAMESPACE)
    except ValueError:
        return False
    ray.kill(handle, no_restart=True)
    return True
