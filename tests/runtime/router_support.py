"""Helpers for Router tests on a real local Ray: deploy a document, count revisions, find replica actors."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import ray

from lmops_runtime import local
from lmops_runtime.contract import REVISION_HEADER

READY_TIMEOUT_S = 420.0


@contextmanager
def deployed(document: dict[str, Any]) -> Iterator[str]:
    """Deploy a serve config document through local mode; yield the base URL; delete its apps afterwards."""
    local.start_local_ray()
    names = [app["name"] for app in document["applications"]]
    port = local.deploy(document, http_port=local.free_port())
    local.wait_ready(READY_TIMEOUT_S, names)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        local.delete_apps(names)


def redeploy(document: dict[str, Any], *, skip: tuple[str, ...] = ()) -> None:
    """Apply a changed document (e.g. new weights); wait until its applications, but ``skip``, are RUNNING."""
    local.deploy(document)
    names = [app["name"] for app in document["applications"] if app["name"] not in skip]
    local.wait_ready(READY_TIMEOUT_S, names)


def replica_actors(app_name: str, deployment: str) -> set[str]:
    """Names of the live replica actors of one deployment (they change when a replica restarts)."""
    prefix = f"SERVE_REPLICA::{app_name}#{deployment}#"
    return {
        a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)
    }


async def revision_counts(
    base: str, n: int, *, concurrency: int = 8, headers: dict[str, str] | None = None
) -> Counter[str]:
    """Send ``n`` one-token /generate calls; count the revision that served each (all must succeed)."""
    counts: Counter[str] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            queue.get_nowait()
            response = await client.post(
                f"{base}/generate", json={"prompt": "a", "max_new_tokens": 1}, headers=headers
            )
            assert response.status_code == 200, response.text
            counts[response.headers[REVISION_HEADER]] += 1

    async with httpx.AsyncClient(timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return counts


def stats(base: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/stats", timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
