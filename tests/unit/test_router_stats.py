"""Counters, quantile estimates, merging across replicas and Prometheus rendering (pure, no Ray)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lmops_runtime.contract import cumulative, quantile
from lmops_runtime.router.stats import (
    LATENCY_BUCKETS_S,
    RevisionCounters,
    deltas_from_wire,
    deltas_to_wire,
    merge,
    merge_health,
    render_prometheus,
    revision_stats,
)


def test_observe_and_json() -> None:
    c = RevisionCounters()
    c.observe(200, 0.02, 5, 7)
    c.observe(500, 0.3, 0, 0)
    c.observe(400, 0.001, 0, 0)
    out = revision_stats(c).model_dump(mode="json")
    assert out["requests"] == 3 and out["errors"] == 1
    assert out["tokens"] == {"prompt": 5, "completion": 7}
    assert out["latency_seconds"]["buckets"][-1] == {"le": "+Inf", "count": 3}
    assert out["codes"] == {"200": 1, "400": 1, "500": 1}


def test_quantile_interpolates_within_bucket() -> None:
    buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)
    i = LATENCY_BUCKETS_S.index(0.1)
    buckets[i] = 100  # all between 0.05 and 0.1
    assert quantile(LATENCY_BUCKETS_S, cumulative(buckets), 0.5) == pytest.approx(0.075)
    assert quantile(LATENCY_BUCKETS_S, cumulative([0] * len(buckets)), 0.5) is None
    overflow = [0] * len(buckets)
    overflow[-1] = 1
    assert quantile(LATENCY_BUCKETS_S, cumulative(overflow), 0.95) == LATENCY_BUCKETS_S[-1]


def test_merge_over_wire_sums_replicas() -> None:
    a, b = RevisionCounters(), RevisionCounters()
    a.observe(200, 0.01, 1, 2)
    b.observe(200, 0.01, 3, 4)
    b.observe(500, 1.0, 0, 0)
    total: dict[str, RevisionCounters] = {}
    merge(total, deltas_from_wire(deltas_to_wire({"r": a})))
    merge(total, deltas_from_wire(deltas_to_wire({"r": b, "s": RevisionCounters()})))
    assert total["r"].requests == 3 and total["r"].errors == 1
    assert (total["r"].prompt_tokens, total["r"].completion_tokens) == (4, 6)


def test_health_merge_is_pessimistic() -> None:
    merged = merge_health(
        [
            {"r": {"healthy": True, "consecutive_failures": 1}},
            {
                "r": {"healthy": False, "consecutive_failures": 3},
                "s": {"healthy": True, "consecutive_failures": 0},
            },
        ]
    )
    assert merged == {
        "r": {"healthy": False, "consecutive_failures": 3},
        "s": {"healthy": True, "consecutive_failures": 0},
    }


def test_prometheus_text_parses_with_the_reference_parser() -> None:
    c = RevisionCounters()
    c.observe(200, 0.02, 5, 7)
    c.observe(503, 0.5, 0, 0)
    text = render_prometheus({'we"ird': c}, {'we"ird': 100}, {'we"ird': {"healthy": False}})
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {s.labels["code"]: s.value for s in families["lmops_requests"].samples}
    assert requests == {"200": 1.0, "503": 1.0}
    hist = {s.name: s for s in families["lmops_request_duration_seconds"].samples if "le" not in s.labels}
    assert hist["lmops_request_duration_seconds_count"].value == 2
    tokens = {s.labels["kind"]: s.value for s in families["lmops_tokens"].samples}
    assert tokens == {"prompt": 5.0, "completion": 7.0}
    assert families["lmops_revision_healthy"].samples[0].value == 0
    assert families["lmops_traffic_weight"].samples[0].labels["revision"] == 'we"ird'
