"""MetricsSnapshot against the Router's own /stats rendering (lmops_runtime.router.stats), and windows."""

from __future__ import annotations

import json
from datetime import timedelta

from lmops_operator.api.status import LanguageModelStatus, RolloutStatus
from lmops_operator.planning.metrics import MetricsSnapshot
from lmops_runtime.contract import StatsResponse, cumulative, quantile
from lmops_runtime.router.stats import LATENCY_BUCKETS_S, RevisionCounters, revision_stats
from tests.unit.rollout_helpers import T0


def stats_body(epoch: str, **revs: RevisionCounters) -> StatsResponse:
    """A GET /stats body as the Router writes it (through JSON, as over HTTP)."""
    body = {
        "model": "m",
        "epoch": epoch,
        "started_at": 1.0,
        "now": T0.timestamp(),
        "router_replicas": 1,
        "weights": {"a": 100},
        "stable": "a",
        "fallback": None,
        "revisions": {
            r: {
                **revision_stats(c).model_dump(mode="json"),
                "healthy": r != "sick",
                "consecutive_failures": 0,
            }
            for r, c in revs.items()
        },
    }
    return StatsResponse.model_validate_json(json.dumps(body))


def counters(*calls: tuple[int, float]) -> RevisionCounters:
    c = RevisionCounters()
    for code, latency in calls:
        c.observe(code, latency, 3, 5)
    return c


def test_parses_the_router_stats_shape() -> None:
    a = counters((200, 0.02), (200, 0.3), (503, 1.2), (499, 0.1), (429, 0.0))
    snap = MetricsSnapshot.from_stats(stats_body("e", a=a, sick=counters((500, 0.1))))
    assert snap.epoch == "e" and snap.time == T0
    assert snap.bounds == LATENCY_BUCKETS_S
    ra = snap.get("a")
    assert (ra.requests, ra.errors) == (5, 1)
    assert ra.prompt_tokens == 15 and ra.completion_tokens == 25
    assert ra.buckets[-1] == 5
    assert abs(ra.latency_sum - 1.62) < 1e-9
    assert snap.get("sick").healthy is False and ra.healthy is True
    assert snap.get("missing").requests == 0


def test_p95_matches_the_router_estimate() -> None:
    calls = [(200, 0.001 * (i % 97) + 0.02 * (i % 13)) for i in range(500)]
    c = counters(*calls)
    snap = MetricsSnapshot.from_stats(stats_body("e", a=c))
    assert snap.p95_seconds("a") == quantile(LATENCY_BUCKETS_S, cumulative(c.buckets), 0.95)
    assert quantile(LATENCY_BUCKETS_S, (0,) * 15, 0.95) is None


def test_delta_subtracts_and_detects_resets() -> None:
    old = MetricsSnapshot.from_stats(stats_body("e", a=counters((200, 0.1)), b=counters((200, 0.1))))
    b2 = counters((200, 0.1), (500, 2.0), (200, 0.05))
    new = MetricsSnapshot.from_stats(stats_body("e", a=counters((200, 0.1)), b=b2, c=counters((200, 1.0))))
    d = new.delta(old)
    assert (d.get("b").requests, d.get("b").errors) == (2, 1)
    assert d.get("a").requests == 0
    assert d.get("c").requests == 1  # new revision: everything is in the window
    assert sum(d.get("b").buckets[:-1]) >= 0 and d.get("b").buckets[-1] == 2
    # Another epoch: the stats actor restarted, the new totals are the window.
    other = MetricsSnapshot.from_stats(stats_body("f", b=counters((200, 0.1))))
    assert other.delta(new) is other
    # A counter that went down without an epoch change also counts as a reset.
    shrunk = MetricsSnapshot.from_stats(stats_body("e", b=counters((200, 0.1))))
    assert shrunk.delta(new).get("b").requests == 1
    assert new.delta(None) is new


def test_baseline_survives_the_status_round_trip() -> None:
    snap = MetricsSnapshot.from_stats(stats_body("e", a=counters((200, 0.1)), b=counters((500, 0.3))))
    status = LanguageModelStatus(rollout=RolloutStatus(baseline=snap.baseline(["a", "b"])))
    wire = json.loads(json.dumps(status.model_dump(mode="json", by_alias=True, exclude_none=True)))
    back = LanguageModelStatus.model_validate(wire)
    assert back.rollout is not None and back.rollout.baseline is not None
    restored = MetricsSnapshot.from_baseline(back.rollout.baseline)
    later = MetricsSnapshot("e", snap.time + timedelta(seconds=5), snap.bounds, {"b": snap.get("b")})
    assert later.delta(restored).get("b").requests == 0
    assert restored.get("b").errors == 1 and restored.bounds == snap.bounds


def test_engine_ttft_is_read_from_a_vllm_revisions_stats() -> None:
    body = stats_body("e", a=counters((200, 0.1)), b=counters((200, 0.1)))
    body.revisions["b"].engine = {
        "time_to_first_token_seconds_sum": 1.5,
        "time_to_first_token_seconds_count": 3,
        "num_requests_waiting": 0,
    }
    snap = MetricsSnapshot.from_stats(body)
    assert snap.get("b").mean_ttft_seconds == 0.5 and snap.get("b").ttft_count == 3
    assert snap.get("a").mean_ttft_seconds is None
