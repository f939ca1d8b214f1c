"""decide_traffic over random event sequences: health flips, spec changes, controls, load."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lmops_operator.api.annotations import Controls
from lmops_operator.planning.traffic import RevisionHealth
from tests.unit.rollout_helpers import Sim, canary_spec, spec

REVISIONS = ("a", "b", "c")
health_st = st.sampled_from(
    [
        RevisionHealth(ready=True, failed=False),
        RevisionHealth(ready=False, failed=False),
        RevisionHealth(ready=False, failed=True),
    ]
)
action_st = st.one_of(
    st.tuples(st.just("health"), st.sampled_from(REVISIONS), health_st),
    st.tuples(st.just("target"), st.sampled_from(REVISIONS), st.none()),
    st.tuples(st.just("serve"), st.integers(1, 40), st.floats(0, 1)),
    st.tuples(st.just("control"), st.sampled_from(["promote", "abort", "restart"]), st.none()),
    st.tuples(st.just("metrics"), st.booleans(), st.none()),
)
spec_st = st.sampled_from(
    [
        canary_spec(),
        canary_spec(failureLimit=1, minRequests=0),
        spec({"strategy": "Immediate"}),
        spec({"autoRollback": False, "steps": [{"weight": 50, "pauseSeconds": 0}]}),
        spec(
            {"steps": [{"weight": 1, "pauseSeconds": 5}, {"weight": 100, "pauseSeconds": 5}]},
            failover={"keepPreviousWarm": True},
        ),
    ]
)


@settings(max_examples=300, deadline=None)
@given(spec_st, st.lists(action_st, min_size=1, max_size=40))
def test_weights_sum_to_100_and_unhealthy_canary_gets_nothing(spec_, actions) -> None:  # type: ignore[no-untyped-def]
    sim = Sim(spec=spec_, target="a")
    sim.reconcile()
    for kind, x, y in actions:
        controls = Controls()
        if kind == "health":
            sim.health[x] = y
        elif kind == "target":
            sim.target = x
        elif kind == "serve":
            sim.bad = {"b": y}
            sim.serve(x, rate=3)
        elif kind == "control":
            controls = Controls(**{x: True})
        else:
            sim.metrics_up = x
        d = sim.reconcile(controls)
        assert sum(d.weights.values()) == 100
        assert all(0 <= w <= 100 for w in d.weights.values())
        assert d.stable in d.weights
        if d.canary is not None:
            h = sim.health.get(d.canary)
            if d.weights[d.canary] > 0:
                assert h is not None and h.ready and not h.failed
            assert d.canary != d.stable
        if d.fallback is not None:
            assert d.weights[d.fallback] == 0
        # The spec's revision is always deployed: a rollout can only finish if its replicas exist.
        assert sim.target in d.weights or (
            d.status.rollout is not None and d.status.rollout.state == "Aborted"
        )
        status = d.status
        assert status.canary_weight == (d.weights[d.canary] if d.canary else None)
        assert status.traffic is not None
        assert {t.revision: t.weight for t in status.traffic} == d.weights
        if status.stable_revision is not None:
            assert status.stable_revision == d.stable
