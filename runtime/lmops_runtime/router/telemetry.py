"""The Router's telemetry: per-revision counters, their push to the stats actor, GET /stats and /metrics.

Each Router replica counts its own calls (``record``) and pushes the deltas to one stats actor per Router
application every ``stats_actor.PUSH_INTERVAL_S``; /stats and /metrics read the sum over all replicas from
that actor. /stats is the typed ``contract.StatsResponse`` the operator reads; Ray's own metrics
(``lmops_requests`` and friends) are exported alongside for a Prometheus that scrapes Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from ray.serve.metrics import Counter, Histogram

from lmops_runtime import config as contract_config
from lmops_runtime import engine_metrics
from lmops_runtime.contract import RevisionStats, StatsResponse
from lmops_runtime.router import stats_actor
from lmops_runtime.router.calls import cause_message
from lmops_runtime.router.errors import ApiError
from lmops_runtime.router.stats import (
    LATENCY_BUCKETS_S,
    Deltas,
    RevisionCounters,
    deltas_from_wire,
    deltas_to_wire,
    render_prometheus,
    revision_stats,
)

Health = dict[str, dict[str, Any]]
# A stats actor call that takes longer than this fails, and the replica resolves the actor by name on the next
# push: on a real cluster a Router's first handle pointed at an actor that never answered, so every /stats
# hung until the client gave up (the operator's canary analysis then never saw a metric).
STATS_CALL_TIMEOUT_S = 3.0


async def _bounded(call: Any) -> Any:
    return await asyncio.wait_for(call, STATS_CALL_TIMEOUT_S)


class Telemetry:
    """Counters of one Router replica. ``health`` reports the breaker state of the served revisions;
    ``on_live`` hears how many Router replicas are live after each push (rate limits divide by it)."""

    def __init__(
        self, app_name: str, replica_id: str, health: Callable[[], Health], on_live: Callable[[int], None]
    ) -> None:
        self.app_name = app_name
        self.replica_id = replica_id
        self.health = health
        self.on_live = on_live
        self.deltas: Deltas = {}
        self.pusher: asyncio.Task[None] | None = None
        self.stats_actor: Any = None
        # Ray annotates tag_keys as a 1-tuple; any tuple of names works.
        rev_code: Any = ("revision", "code")
        rev_kind: Any = ("revision", "kind")
        self.m_requests = Counter("lmops_requests", description="Call attempts.", tag_keys=rev_code)
        self.m_latency = Histogram(
            "lmops_request_duration_seconds",
            description="Call latency by revision.",
            boundaries=list(LATENCY_BUCKETS_S),
            tag_keys=("revision",),
        )
        self.m_tokens = Counter("lmops_tokens", description="Tokens by revision.", tag_keys=rev_kind)

    def record(
        self, revision: str, code: int, latency_s: float, prompt: int = 0, completion: int = 0
    ) -> None:
        self.deltas.setdefault(revision, RevisionCounters()).observe(code, latency_s, prompt, completion)
        self.m_requests.inc(tags={"revision": revision, "code": str(code)})
        self.m_latency.observe(latency_s, tags={"revision": revision})
        if prompt:
            self.m_tokens.inc(prompt, tags={"revision": revision, "kind": "prompt"})
        if completion:
            self.m_tokens.inc(completion, tags={"revision": revision, "kind": "completion"})

    def ensure_pusher(self) -> None:
        if self.pusher is None or self.pusher.done():
            self.pusher = asyncio.get_running_loop().create_task(self._push_loop())

    async def _push_loop(self) -> None:
        while True:
            await asyncio.sleep(stats_actor.PUSH_INTERVAL_S)
            with contextlib.suppress(Exception):
                await self.flush()

    async def flush(self) -> None:
        """Send this replica's deltas to the stats actor; on failure they are kept for the next push."""
        deltas, self.deltas = self.deltas, {}
        try:
            if self.stats_actor is None:
                self.stats_actor = stats_actor.get_or_create(self.app_name)
            live = await _bounded(
                self.stats_actor.push.remote(self.replica_id, deltas_to_wire(deltas), self.health())
            )
        except Exception:
            self.stats_actor = None
            restored = deltas
            for rev, counters in self.deltas.items():
                restored.setdefault(rev, RevisionCounters()).add(counters)
            self.deltas = restored
            raise
        self.on_live(max(1, int(live)))

    async def _aggregate(self) -> dict[str, Any]:
        """Flush this replica's counters, then read the sum over all replicas from the stats actor."""
        try:
            await self.flush()
            assert self.stats_actor is not None
            snapshot: dict[str, Any] = await _bounded(self.stats_actor.snapshot.remote())
        except Exception as exc:
            self.stats_actor = None  # the next read resolves the actor by its name again
            raise ApiError(
                503,
                f"Stats actor unavailable: {cause_message(exc)}",
                type_="server_error",
                code="stats_unavailable",
            ) from None
        return snapshot

    async def stats(
        self, model: str, config: contract_config.RouterConfig, served: list[str]
    ) -> StatsResponse:
        snapshot = await self._aggregate()
        totals = deltas_from_wire(snapshot["totals"])
        revisions: dict[str, RevisionStats] = {rev: revision_stats(c) for rev, c in sorted(totals.items())}
        for rev in served:
            revisions.setdefault(rev, revision_stats(RevisionCounters()))
        for rev, state in snapshot["health"].items():
            if rev in revisions:
                revisions[rev] = revisions[rev].model_copy(update=state)
        for rev, values in (await engine_metrics.read(model)).items():
            if rev in revisions:
                revisions[rev] = revisions[rev].model_copy(update={"engine": values})
        return StatsResponse(
            model=model,
            epoch=snapshot["epoch"],
            started_at=snapshot["started_at"],
            now=time.time(),
            router_replicas=snapshot["router_replicas"],
            weights=dict(config.weights),
            stable=config.stable,
            fallback=config.fallback,
            revisions=revisions,
        )

    async def prometheus(self, model: str, config: contract_config.RouterConfig) -> str:
        snapshot = await self._aggregate()
        text = render_prometheus(
            deltas_from_wire(snapshot["totals"]), dict(config.weights), snapshot["health"]
        )
        return text + engine_metrics.render_prometheus(await engine_metrics.read(model))
