"""Where canary analysis gets the Router's per-revision counters: its GET /stats (default), or Prometheus.

Both return a ``MetricsSnapshot`` of cumulative counters, or None when nothing can be read (the analysis
then reports Inconclusive rather than failing a canary for a monitoring outage).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from lmops_operator.api.models import LanguageModel
from lmops_operator.names import service_name
from lmops_operator.planning.metrics import MetricsSnapshot, RevisionMetrics
from lmops_operator.router_client import TIMEOUT_S, UNREADABLE, fetch_stats, read_stats, router_url, stats_url
from lmops_runtime.contract import HTTP_PORT

log = logging.getLogger(__name__)


class MetricsSource(Protocol):
    async def read(self, lm: LanguageModel) -> MetricsSnapshot | None: ...


def router_stats_url(lm: LanguageModel, port: int = HTTP_PORT) -> str:
    """The Router's stats endpoint behind the model's stable Service (the one users call)."""
    return stats_url(router_url(lm, port))


class _SharedClient:
    """One HTTP client for every read of a source, made on first use (on the operator's loop): connections
    are reused, and making a client (an SSL context from the CA bundle) costs tens of milliseconds of CPU,
    which with a client per read was half of the operator's time at a thousand models."""

    timeout_s: float
    transport: httpx.AsyncBaseTransport | None
    _client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, transport=self.transport)
        return self._client


class RouterStatsSource(_SharedClient):
    """Reads GET /stats from the Router; ``url_for`` maps a model to the URL (in-cluster DNS by default)."""

    def __init__(
        self,
        url_for: Callable[[LanguageModel], str] = router_stats_url,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url_for = url_for
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s
        self.transport = transport

    async def read(self, lm: LanguageModel) -> MetricsSnapshot | None:
        url = self.url_for(lm)
        try:
            stats = await fetch_stats(self._http(), url, self.headers)
            return MetricsSnapshot.from_stats(stats)
        except UNREADABLE as exc:
            log.info("router stats unavailable at %s: %s", url, exc)
            return None


def read_router_stats(url: str, timeout_s: float = TIMEOUT_S) -> MetricsSnapshot | None:
    """Blocking form for local mode and the CLI."""
    stats = read_stats(url, timeout_s)
    try:
        return None if stats is None else MetricsSnapshot.from_stats(stats)
    except ValueError:
        return None


class PrometheusSource(_SharedClient):
    """Reads the Router's series through Prometheus' HTTP API (``/api/v1/query``).

    The default names are those of the Router's own GET /metrics (``lmops_requests_total``,
    ``lmops_request_duration_seconds_bucket``, and for vLLM revisions the engine's time to first token as
    ``vllm:time_to_first_token_seconds_sum``/``_count``, which the TTFT gate reads), scraped per model;
    ``selector`` holds the label matchers
    that pick one model's Router (by default ``service="<name>"``, the label Prometheus' Kubernetes
    service discovery usually sets). The series are cumulative counters, so windowing works as for /stats;
    a Router stats reset shows as a counter drop, which ``MetricsSnapshot.delta`` treats as a reset.
    """

    def __init__(
        self,
        base_url: str,
        selector: Callable[[LanguageModel], str] | None = None,
        requests_metric: str = "lmops_requests_total",
        latency_metric: str = "lmops_request_duration_seconds_bucket",
        ttft_metric: str = "vllm:time_to_first_token_seconds",
        timeout_s: float = TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.transport = transport
        self.base_url = base_url.rstrip("/")
        self.selector = selector or (lambda lm: f'service="{service_name(lm.metadata.name)}"')
        self.requests_metric = requests_metric
        self.latency_metric = latency_metric
        self.ttft_metric = ttft_metric
        self.timeout_s = timeout_s

    def _query_text(self, metric: str, by: str, lm: LanguageModel) -> str:
        return f"sum by ({by}) ({metric}{{{self.selector(lm)}}})"

    async def _query(self, client: httpx.AsyncClient, query: str) -> list[dict[str, Any]]:
        response = await client.get(f"{self.base_url}/api/v1/query", params={"query": query})
        response.raise_for_status()
        body = response.json()
        if body.get("status") != "success":
            raise ValueError(f"prometheus: {body.get('error', 'query failed')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def read(self, lm: LanguageModel) -> MetricsSnapshot | None:
        try:
            client = self._http()
            requests = await self._query(client, self._query_text(self.requests_metric, "revision, code", lm))
            buckets = await self._query(client, self._query_text(self.latency_metric, "revision, le", lm))
            ttft = [
                await self._query(client, self._query_text(f"{self.ttft_metric}{suffix}", "revision", lm))
                for suffix in ("_sum", "_count")
            ]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            log.info("prometheus unavailable at %s: %s", self.base_url, exc)
            return None
        return snapshot_from_prometheus(
            self.base_url, requests, buckets, ttft_sums=ttft[0], ttft_counts=ttft[1]
        )


def _per_revision(results: Sequence[dict[str, Any]]) -> dict[str, float]:
    return {series["metric"]["revision"]: float(series["value"][1]) for series in results}


def snapshot_from_prometheus(
    epoch: str,
    requests: list[dict[str, Any]],
    buckets: list[dict[str, Any]],
    *,
    ttft_sums: Sequence[dict[str, Any]] = (),
    ttft_counts: Sequence[dict[str, Any]] = (),
) -> MetricsSnapshot:
    """Build a snapshot from instant-vector results (``metric`` labels, ``value`` [time, "number"]).

    ``ttft_sums``/``ttft_counts``: per revision, the cumulative sum and count of vLLM's time to first
    token (none for transformers revisions, whose TTFT gate then does not apply, as with /stats).
    """
    codes: dict[str, dict[str, float]] = {}
    for series in requests:
        labels = series["metric"]
        codes.setdefault(labels["revision"], {})[labels.get("code", "")] = float(series["value"][1])
    per_le: dict[str, dict[float, float]] = {}
    for series in buckets:
        labels = series["metric"]
        le = labels["le"]
        bound = math.inf if le in ("+Inf", "Inf") else float(le)
        per_le.setdefault(labels["revision"], {})[bound] = float(series["value"][1])
    bounds = sorted({b for rev in per_le.values() for b in rev if not math.isinf(b)})
    ttft_sum, ttft_count = _per_revision(ttft_sums), _per_revision(ttft_counts)
    revisions: dict[str, RevisionMetrics] = {}
    for rev in sorted(set(codes) | set(per_le)):
        rev_codes = codes.get(rev, {})
        le_counts = per_le.get(rev, {})
        cumulative = tuple(int(le_counts.get(b, 0)) for b in [*bounds, math.inf])
        revisions[rev] = RevisionMetrics(
            requests=int(sum(rev_codes.values())),
            errors=int(sum(n for c, n in rev_codes.items() if c.startswith("5"))),
            buckets=cumulative,
            ttft_sum=ttft_sum.get(rev, 0.0),
            ttft_count=int(ttft_count.get(rev, 0)),
        )
    return MetricsSnapshot(epoch=epoch, time=datetime.now(UTC), bounds=tuple(bounds), revisions=revisions)


class FakeMetricsSource:
    """For tests: returns whatever snapshot was last set (None: unreadable), counting reads."""

    def __init__(self, snapshot: MetricsSnapshot | None = None) -> None:
        self.snapshot = snapshot
        self.reads = 0

    def set(self, snapshot: MetricsSnapshot | None) -> None:
        self.snapshot = snapshot

    async def read(self, lm: LanguageModel) -> MetricsSnapshot | None:
        self.reads += 1
        return self.snapshot
