"""Metrics sources over HTTP (transport mocked): the Router's /stats and Prometheus' query API."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families

from lmops_operator.api import load_language_model
from lmops_operator.api.rollout_spec import AnalysisSpec
from lmops_operator.metrics_source import (
    FakeMetricsSource,
    PrometheusSource,
    RouterStatsSource,
    router_stats_url,
)
from lmops_operator.planning.analysis import analyse
from lmops_runtime import engine_metrics
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


#: The Router's engine metrics for a vLLM canary "b" (3 requests, 0.6 s to first token in all) and its stable
#: revision "a"; the Router renders them with vLLM's names in the same /metrics text as its counters.
ENGINE = {
    "a": {"time_to_first_token_seconds_sum": 0.3, "time_to_first_token_seconds_count": 3},
    "b": {"time_to_first_token_seconds_sum": 1.8, "time_to_first_token_seconds_count": 3},
}
QUERY = re.compile(r"sum by \((?P<by>[^)]*)\) \((?P<metric>[^{]+)\{(?P<selector>[^}]*)\}\)")


def _prometheus_from_router_metrics(query: str) -> list[dict[str, object]]:
    """Answer a ``sum by (...) (metric{...})`` query from the Router's own /metrics text, as Prometheus
    would after scraping it (the scrape adds the selector's labels, so the selector matches every series)."""
    match = QUERY.fullmatch(query)
    assert match is not None, query
    by = [label.strip() for label in match["by"].split(",")]
    text = render_prometheus({"a": _counters(), "b": _counters()}, {"a": 90, "b": 10}, {})
    text += engine_metrics.render_prometheus(ENGINE)
    sums: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == match["metric"]:
                key = tuple(sample.labels[label] for label in by)
                sums[key] = sums.get(key, 0.0) + sample.value
    return [{"metric": dict(zip(by, key, strict=True)), "value": [0, str(v)]} for key, v in sums.items()]


async def test_prometheus_source_matches_the_router_counts_and_feeds_the_ttft_gate() -> None:
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
    assert (snap.get("b").ttft_sum, snap.get("b").ttft_count) == (1.8, 3)
    spec = AnalysisSpec.model_validate(
        {"minRequests": 3, "maxErrorRate": 0.5, "maxTimeToFirstTokenMilliseconds": 500}
    )
    result = analyse(spec, "b", "a", snap.delta(None), 30.0, datetime.now(UTC))
    assert result.verdict == "Fail" and result.mean_time_to_first_token_milliseconds == 600.0
    failing = PrometheusSource(
        "http://prom:9090",
        transport=httpx.MockTransport(lambda r: httpx.Response(200, text=json.dumps({"status": "error"}))),
    )
    assert await failing.read(LM) is None


async def test_fake_source() -> None:
    fake = FakeMetricsSource()
    assert await fake.read(LM) is None and fake.reads == 1
