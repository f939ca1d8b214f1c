"""Metrics sources over HTTP (transport mocked): the Router's /stats and Prometheus' query API."""

from __future__ import annotations

import json

import httpx

from lmops_operator.api import load_language_model
from lmops_operator.metrics_source import (
    FakeMetricsSource,
    PrometheusSource,
    RouterStatsSource,
    router_stats_url,
)
from lmops_runtime.contract import StatsResponse
from lmops_runtime.router.stats import RevisionCounters, render_prometheus, revision_stats

LM = load_language_model(
    {"metadata": {"name": "m", "namespace": "ns"}, "spec": {"model": {"source": "builtin://tiny"}}}
)


def _counters() -> RevisionCounters:
    c = RevisionCounters()
    for code, latency in ((200, 0.02), (200, 0.3), (503, 1.5)):
        c.observe(code, latency, 1, 2)
    return c


async def test_router_stats_source() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        body = StatsResponse(
            model="m",
            epoch="e",
            started_at=0.0,
            now=1.0,
            router_replicas=1,
            weights={"a": 100},
            stable="a",
            revisions={"a": revision_stats(_counters())},
        )
        return httpx.Response(200, json=body.model_dump(mode="json"))

    source = RouterStatsSource(transport=httpx.MockTransport(handler))
    snap = await source.read(LM)
    assert seen == ["http://m.ns.svc:8000/stats"] == [router_stats_url(LM)]
    assert snap is not None and snap.get("a").requests == 3 and snap.get("a").errors == 1

    broken = RouterStatsSource(transport=httpx.MockTransport(lambda r: httpx.Response(503, text="down")))
    assert await broken.read(LM) is None
    garbage = RouterStatsSource(transport=httpx.MockTransport(lambda r: httpx.Response(200, text="{")))
    assert await garbage.read(LM) is None


def _prometheus_from_router_metrics(query: str) -> list[dict[str, object]]:
    """Answer a `sum by (...)` query from the Router's own /metrics text, as Prometheus would."""
    text = render_prometheus({"a": _counters()}, {"a": 100}, {})
    metric = "lmops_requests_total" if "requests_total" in query else "lmops_request_duration_seconds_bucket"
    out = []
    for line in text.splitlines():
        if line.startswith(metric + "{"):
            labels_text, value = line[len(metric) + 1 :].rsplit("} ", 1)
            labels = dict(item.split("=", 1) for item in labels_text.split(","))
            out.append({"metric": {k: v.strip('"') for k, v in labels.items()}, "value": [0, value]})
    return out


async def test_prometheus_source_matches_the_router_counts() -> None:
    queries: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        queries.append(query)
        result = _prometheus_from_router_metrics(query)
        return httpx.Response(
            200, json={"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    source = PrometheusSource("http://prom:9090/", transport=httpx.MockTransport(handler))
    snap = await source.read(LM)
    assert snap is not None
    assert all('service="m"' in q for q in queries)
    a = snap.get("a")
    assert (a.requests, a.errors) == (3, 1)
    assert a.buckets == tuple(b.count for b in revision_stats(_counters()).latency_seconds.buckets)
    failing = PrometheusSource(
        "http://prom:9090",
        transport=httpx.MockTransport(lambda r: httpx.Response(200, text=json.dumps({"status": "error"}))),
    )
    assert await failing.read(LM) is None


async def test_fake_source() -> None:
    fake = FakeMetricsSource()
    assert await fake.read(LM) is None and fake.reads == 1
