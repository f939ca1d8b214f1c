"""Traffic splitting, reconfigure without restart, retries, failover and scale-from-zero on a real local Ray.

Revisions g1 and g2 are the same tiny model under two names; ``broken`` is a real model whose forward pass
fails. The Router runs two replicas so that /stats must add up counters from both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmops_runtime import local
from lmops_runtime.config import RouterConfig
from testkit.models import broken_generate_model
from tests.runtime import serve_configs as sc
from tests.runtime.router_support import (
    deployed,
    redeploy,
    replica_actors,
    revision_counts,
    stats,
)

pytestmark = pytest.mark.slow


class Cluster:
    """The module's document, rebuilt with new Router settings or server args and redeployed."""

    def __init__(self, generate_dir: Path, broken_dir: Path) -> None:
        self.generate_dir = generate_dir
        self.broken_dir = broken_dir
        self.base = ""

    def document(self, *, g2_batch: int = 8, zero: bool = False, **router: Any) -> dict[str, Any]:
        config = RouterConfig.model_validate({"weights": {"g1": 100}, "stable": "g1", **router})
        servers = [sc.server_app("g1", self.generate_dir), sc.server_app("g2", self.generate_dir)]
        servers[1]["args"]["batching"]["max_batch_size"] = g2_batch
        if not zero:
            # The scale-from-zero test leaves the broken revision out (deleting its application) to free CPU.
            servers.append(sc.server_app("broken", self.broken_dir))
        if zero:
            scaled = {"min_replicas": 0, "initial_replicas": 0, "max_replicas": 1, "upscale_delay_s": 0}
            servers.append(sc.server_app("zero", self.generate_dir, autoscaling=scaled))
        return sc.document(sc.router_app(config, num_replicas=2), *servers)

    def apply(self, **kw: Any) -> None:
        # The broken revision fails its health check once a real request has hit it; the Router must cope
        # with that, so its application's status is not waited for.
        redeploy(self.document(**kw), skip=("rev-broken",))


@pytest.fixture(scope="module")
def cluster(
    ray_local: None, tiny_generate_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    broken = broken_generate_model(tiny_generate_model_dir, tmp_path_factory.mktemp("broken"))
    state = Cluster(tiny_generate_model_dir, broken)
    with deployed(state.document()) as base:
        state.base = base
        yield state


async def test_extreme_weights_route_everything(cluster: Cluster) -> None:
    cluster.apply(weights={"g1": 100, "g2": 0})
    assert await revision_counts(cluster.base, 100) == {"g1": 100}
    cluster.apply(weights={"g1": 0, "g2": 100})
    assert await revision_counts(cluster.base, 100) == {"g2": 100}


async def test_weights_change_is_a_reconfigure_and_the_split_follows(cluster: Cluster) -> None:
    cluster.apply(weights={"g1": 80, "g2": 20})
    routers = replica_actors("lm", "Router")
    servers = replica_actors("rev-g1", "ModelServer") | replica_actors("rev-g2", "ModelServer")
    assert len(routers) == 2 and len(servers) == 2
    counts = await revision_counts(cluster.base, 500)
    assert abs(counts["g1"] - 400) < 4 * (500 * 0.8 * 0.2) ** 0.5, counts
    cluster.apply(weights={"g1": 90, "g2": 10})
    counts = await revision_counts(cluster.base, 1000, concurrency=12)
    assert abs(counts["g2"] - 100) < 4 * (1000 * 0.9 * 0.1) ** 0.5, counts  # within 4 sigma: 100 +- 38
    assert replica_actors("lm", "Router") == routers
    assert replica_actors("rev-g1", "ModelServer") | replica_actors("rev-g2", "ModelServer") == servers


async def test_changing_one_revisions_args_restarts_only_that_revision(cluster: Cluster) -> None:
    cluster.apply(weights={"g1": 50, "g2": 50})
    g1, g2 = replica_actors("rev-g1", "ModelServer"), replica_actors("rev-g2", "ModelServer")
    routers = replica_actors("lm", "Router")
    cluster.apply(weights={"g1": 50, "g2": 50}, g2_batch=4)
    assert replica_actors("rev-g1", "ModelServer") == g1
    assert replica_actors("lm", "Router") == routers
    assert replica_actors("rev-g2", "ModelServer").isdisjoint(g2)
    assert set(await revision_counts(cluster.base, 40)) == {"g1", "g2"}


async def test_sticky_header_pins_a_caller_to_one_revision(cluster: Cluster) -> None:
    cluster.apply(weights={"g1": 50, "g2": 50}, sticky_header="x-user")
    for user in ("alice", "bob", "carol"):
        counts = await revision_counts(cluster.base, 20, headers={"x-user": user})
        assert len(counts) == 1, (user, counts)
    seen = set()
    for i in range(30):
        seen |= set(await revision_counts(cluster.base, 1, concurrency=1, headers={"x-user": f"user-{i}"}))
    assert seen == {"g1", "g2"}


async def test_failed_calls_are_retried_on_stable_and_counted_against_the_canary(cluster: Cluster) -> None:
    cluster.apply(weights={"g1": 50, "broken": 50})
    before = stats(cluster.base)["revisions"]
    counts = await revision_counts(cluster.base, 40)  # asserts every call got a 200
    assert set(counts) == {"g1"}
    time.sleep(1.5)  # both Router replicas push within PUSH_INTERVAL_S
    after = stats(cluster.base)["revisions"]
    broken_errors = after["broken"]["errors"] - before.get("broken", {"errors": 0})["errors"]
    assert broken_errors >= 3
    assert after["broken"]["healthy"] is False
    assert after["g1"]["errors"] == before["g1"]["errors"]
    assert after["g1"]["requests"] - before["g1"]["requests"] == 40


async def test_warm_fallback_takes_over_from_an_unhealthy_stable(cluster: Cluster) -> None:
    cluster.apply(weights={"broken": 100, "g1": 0}, stable="broken", fallback="g2")
    counts = await revision_counts(cluster.base, 30)
    assert set(counts) == {"g2"}
    body = stats(cluster.base)
    assert body["fallback"] == "g2" and body["revisions"]["broken"]["healthy"] is False


async def test_stats_sum_both_router_replicas(cluster: Cluster) -> None:
    cluster.apply(weights={"g1": 100})
    time.sleep(1.5)
    before = stats(cluster.base)
    await revision_counts(cluster.base, 60)
    time.sleep(1.5)
    after = stats(cluster.base)
    assert after["router_replicas"] == 2 and after["epoch"] == before["epoch"]
    assert after["revisions"]["g1"]["requests"] - before["revisions"]["g1"]["requests"] == 60


async def test_calls_queued_for_a_deleted_revision_move_to_stable_when_the_router_drops_it(
    cluster: Cluster,
) -> None:
    """The race a rolled-back canary opens on a cluster: one serve config both deletes the canary's
    application and drops it from the Router, and Serve may stop the replicas first. A call already queued
    in the canary's handle then waits for a replica that never comes: before the fix it spent the whole
    wait budget there and the retry on stable got none left (a 503 naming the stable revision). Here the
    two steps are taken apart on purpose, calls queue on the deleted revision, and the Router's reconfigure
    must send every one of them to stable at once."""
    budget_s = 60.0
    cluster.apply(weights={"g1": 50, "g2": 50}, scale_from_zero_timeout_s=budget_s)
    outcomes: list[tuple[int, float, str]] = []
    stop = asyncio.Event()

    async def client(http: httpx.AsyncClient) -> None:
        while not stop.is_set():
            started = time.monotonic()
            response = await http.post(f"{cluster.base}/generate", json={"prompt": "a", "max_new_tokens": 1})
            outcomes.append((response.status_code, time.monotonic() - started, response.text[:200]))

    async with httpx.AsyncClient(timeout=2 * budget_s) as http:
        clients = [asyncio.create_task(client(http)) for _ in range(8)]
        await asyncio.sleep(1)
        await asyncio.to_thread(local.delete_apps, ["rev-g2"])  # replicas stop, the Router still routes there
        await asyncio.sleep(3)
        without_g2 = cluster.document(weights={"g1": 100}, scale_from_zero_timeout_s=budget_s)
        without_g2["applications"] = [a for a in without_g2["applications"] if a["name"] != "rev-g2"]
        dropped = time.monotonic()
        await asyncio.to_thread(redeploy, without_g2, skip=("rev-broken",))
        await asyncio.sleep(2)
        stop.set()
        await asyncio.gather(*clients)
    drained_s = time.monotonic() - dropped
    failed = [o for o in outcomes if o[0] != 200]
    assert not failed, failed[:3]
    assert drained_s < budget_s / 2, f"calls held {drained_s:.0f}s after the Router dropped the revision"
    assert max(seconds for _, seconds, _ in outcomes) < budget_s / 2
    cluster.apply()


def test_scale_from_zero_wait_is_bounded_then_served(cluster: Cluster) -> None:
    cluster.apply(zero=True, weights={"zero": 100}, stable="zero", scale_from_zero_timeout_s=0.5)
    assert replica_actors("rev-zero", "ModelServer") == set()
    started = time.monotonic()
    response = httpx.post(f"{cluster.base}/generate", json={"prompt": "a", "max_new_tokens": 1}, timeout=60)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "replica_wait_timeout"
    assert time.monotonic() - started < 10
    cluster.apply(zero=True, weights={"zero": 100}, stable="zero", scale_from_zero_timeout_s=300)
    response = httpx.post(f"{cluster.base}/generate", json={"prompt": "a", "max_new_tokens": 1}, timeout=320)
    assert response.status_code == 200 and response.json()["revision"] == "zero"
