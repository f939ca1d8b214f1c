"""The canary state machine, driven through decide_traffic the way the operator calls it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lmops_operator.api.annotations import Controls
from lmops_operator.api.status import LanguageModelStatus, QualityGateResult
from lmops_operator.planning.traffic import TrafficInput, decide_traffic
from tests.unit.rollout_helpers import (
    FAILED,
    READY,
    STARTING,
    T0,
    Sim,
    canary_spec,
    spec,
)


def stable_sim(target: str = "b", **kw: object) -> Sim:
    """A model whose stable revision ``a`` is serving; the spec now asks for ``target``."""
    sim = Sim(spec=kw.pop("spec_", canary_spec()), target="a")  # type: ignore[arg-type]
    sim.health["a"] = READY
    sim.reconcile()
    assert sim.status.stable_revision == "a"
    sim.target = target
    return sim


def test_first_deploy_waits_for_ready_then_becomes_stable() -> None:
    sim = Sim(spec=canary_spec(), target="a")
    d = sim.reconcile()
    assert d.weights == {"a": 100}
    assert d.stable == "a" and d.status.stable_revision is None
    assert d.status.rollout is not None and d.status.rollout.state == "WaitingForReady"
    assert d.requeue_after is None  # readiness comes as an event (the RayService watch), not by polling
    sim.health["a"] = READY
    d = sim.reconcile()
    assert d.status.stable_revision == "a" and d.status.rollout is None
    assert d.status.traffic is not None and [(t.revision, t.weight) for t in d.status.traffic] == [("a", 100)]
    assert d.events == []  # the phase change to Ready is the one event (planning.decide.phase_events)
    assert d.requeue_after is None


def test_first_deploy_failure_is_reported_and_replaced_by_the_next_spec() -> None:
    sim = Sim(spec=canary_spec(), target="a", health={"a": FAILED})
    d = sim.reconcile()
    assert ("Warning", "RevisionFailed") in [(e[0], e[1]) for e in d.events]
    assert d.status.stable_revision is None
    sim.target = "b"  # no stable yet: the new revision simply replaces the broken one
    d = sim.reconcile()
    assert d.weights == {"b": 100}


def test_immediate_swaps_once_ready_and_retires_old() -> None:
    sim = stable_sim(spec_=spec({"strategy": "Immediate"}))
    d = sim.reconcile()
    assert d.weights == {"a": 100, "b": 0} and d.canary == "b"
    sim.health["b"] = READY
    d = sim.reconcile()
    assert d.weights == {"b": 100} and d.stable == "b" and d.canary is None
    assert d.status.stable_revision == "b" and d.status.rollout is None and d.fallback is None


def test_immediate_keeps_previous_warm_with_failover() -> None:
    sim = stable_sim(spec_=spec({"strategy": "Immediate"}, failover={"keepPreviousWarm": True}))
    sim.health["b"] = READY
    d = sim.reconcile()
    assert d.weights == {"b": 100, "a": 0} and d.fallback == "a"
    assert d.status.fallback_revision == "a"
    sim.target, sim.health["c"] = "c", READY
    d = sim.reconcile()
    assert d.weights == {"c": 100, "b": 0} and d.fallback == "b"  # only the latest previous stays warm


def test_healthy_canary_walks_every_step_then_promotes() -> None:
    sim = stable_sim()
    d = sim.reconcile()
    assert d.weights == {"a": 100, "b": 0}
    sim.health["b"] = READY
    d = sim.reconcile()
    assert d.weights == {"a": 80, "b": 20} and d.status.canary_weight == 20
    assert d.status.rollout is not None and d.status.rollout.state == "Progressing"
    assert any(e[1] == "CanaryStep" for e in d.events)
    seen = [dict(d.weights)]
    for _ in range(40):
        sim.serve(5, rate=4)
        d = sim.reconcile()
        if d.weights != seen[-1]:
            seen.append(dict(d.weights))
        if d.status.stable_revision == "b":
            break
    assert seen == [{"a": 80, "b": 20}, {"a": 40, "b": 60}, {"b": 100}]
    assert d.status.rollout is None and d.status.canary_revision is None
    assert d.status.last_analysis is not None and d.status.last_analysis.verdict == "Pass"
    assert any(e[1] == "RolloutPromoted" for e in d.events)


def test_step_time_respected_exactly() -> None:
    sim = stable_sim()
    sim.health["b"] = READY
    sim.reconcile()
    step_started = sim.now
    while sim.status.canary_weight == 20:
        sim.serve(5, rate=4)
        sim.reconcile()
    assert sim.now - step_started >= timedelta(seconds=60)
    assert sim.now - step_started < timedelta(seconds=70)


def test_failing_canary_aborts_after_failure_limit() -> None:
    sim = stable_sim()
    sim.health["b"] = READY
    sim.bad["b"] = 0.5
    sim.reconcile()
    for _ in range(10):
        sim.serve(5, rate=4)
        d = sim.reconcile()
        if d.status.rollout and d.status.rollout.state == "Aborted":
            break
    assert d.weights == {"a": 100} and d.canary is None
    ro = d.status.rollout
    assert ro is not None and ro.state == "Aborted" and ro.failed_checks == 2
    assert ro.abort_reason and "error rate" in ro.abort_reason
    la = d.status.last_analysis
    assert la is not None and la.verdict == "Fail" and la.max_error_rate == 0.05 and la.error_rate == 0.5
    assert ("Warning", "RolloutAborted") in [(e[0], e[1]) for e in d.events]
    assert sim.now - T0 <= timedelta(seconds=25)  # two intervals of 10 s (+ one reconcile period)
    # Aborted stays aborted while the spec stays the same...
    for _ in range(5):
        sim.serve(5)
        d = sim.reconcile()
        assert d.weights == {"a": 100}
    # ... and a new spec starts a new rollout.
    sim.target = "c"
    d = sim.reconcile()
    assert d.weights == {"a": 100, "c": 0} and d.status.rollout is not None
    assert d.status.rollout.revision == "c" and d.status.rollout.failed_checks == 0


def test_failure_limit_one_rolls_back_within_one_interval() -> None:
    sim = stable_sim(spec_=canary_spec(failureLimit=1))
    sim.health["b"] = READY
    sim.bad["b"] = 1.0
    sim.reconcile()
    start = sim.now
    while sim.status.canary_revision == "b":
        sim.serve(1, rate=20)
        sim.reconcile()
    assert sim.now - start <= timedelta(seconds=10)
    assert sim.status.rollout is not None and sim.status.rollout.state == "Aborted"


def test_without_auto_rollback_the_rollout_pauses_at_its_weight() -> None:
    sim = stable_sim(
        spec_=spec(
            {
                "autoRollback": False,
                "steps": [{"weight": 30}],
                "analysis": {"minRequests": 5, "failureLimit": 1, "intervalSeconds": 10},
            }
        )
    )
    sim.health["b"] = READY
    sim.bad["b"] = 1.0
    sim.reconcile()
    sim.run(20)
    d = sim.last
    assert d is not None and d.status.rollout is not None and d.status.rollout.state == "Paused"
    assert d.weights == {"a": 70, "b": 30}
    assert d.requeue_after is None
    assert any(e[1] == "RolloutPaused" for h in sim.history for e in h.events)
    sim.run(60)  # paused: nothing moves
    assert sim.last is not None and sim.last.weights == {"a": 70, "b": 30}
    d = sim.reconcile(Controls(abort=True))
    assert d.weights == {"a": 100} and d.status.rollout is not None
    assert d.status.rollout.state == "Aborted"


def test_promote_skips_remaining_steps() -> None:
    sim = stable_sim()
    sim.health["b"] = READY
    sim.reconcile()
    d = sim.reconcile(Controls(promote=True))
    assert d.weights == {"b": 100} and d.status.stable_revision == "b"


def test_promote_before_ready_waits_for_ready() -> None:
    sim = stable_sim()
    d = sim.reconcile(Controls(promote=True))
    assert d.weights == {"a": 100, "b": 0}
    assert d.status.rollout is not None and d.status.rollout.promote_requested
    sim.run(10)
    assert sim.status.stable_revision == "a"
    sim.health["b"] = READY
    d = sim.reconcile()
    assert d.weights == {"b": 100}


def test_abort_control_goes_back_to_stable_until_restart() -> None:
    sim = stable_sim()
    sim.health["b"] = READY
    sim.reconcile()
    sim.run(30, rate=4)
    d = sim.reconcile(Controls(abort=True))
    assert d.weights == {"a": 100}
    assert (
        d.status.rollout is not None
        and d.status.rollout.abort_reason == "aborted by request (lmops.io/abort)"
    )
    sim.run(120)
    assert sim.status.stable_revision == "a" and sim.last is not None and sim.last.weights == {"a": 100}
    d = sim.reconcile(Controls(restart=True))
    assert d.weights == {"a": 80, "b": 20}  # ready already: straight to the first step
    assert d.status.rollout is not None and d.status.rollout.step == 0


def test_promote_of_an_aborted_rollout_forces_it() -> None:
    sim = stable_sim()
    sim.health["b"] = READY
    sim.reconcile()
    sim.reconcile(Controls(abort=True))
    d = sim.reconcile(Controls(promote=True))
    assert d.weights == {"b": 100}


def test_canary_failing_to_deploy_aborts() -> None:
    sim = stable_sim()
    sim.reconcile()
    sim.health["b"] = FAILED
    d = sim.reconcile()
    assert d.weights == {"a": 100}
    assert d.status.rollout is not None and d.status.rollout.state == "Aborted"
    assert "DEPLOY_FAILED" in (d.status.rollout.abort_reason or "")


def test_canary_turning_unready_loses_its_traffic_and_holds() -> None:
    sim = stable_sim()
    sim.health["b"] = READY
    sim.reconcile()
    sim.health["b"] = STARTING
    d = sim.reconcile()
    assert d.weights == {"a": 100, "b": 0}
    assert d.status.rollout is not None and d.status.rollout.state == "Progressing"
    sim.health["b"] = READY
    d = sim.reconcile()
    assert d.weights == {"a": 80, "b": 20}


def test_change_during_rollout_supersedes_canary() -> None:
    sim = stable_sim()
    sim.health["b"] = READY
    sim.reconcile()
    sim.run(70, rate=4)
    assert sim.status.canary_weight == 60
    sim.target = "c"
    d = sim.reconcile()
    assert d.weights == {"a": 100, "c": 0} and d.canary == "c"  # b dropped, a keeps serving
    assert any(e[1] == "RolloutSuperseded" for e in d.events)
    ro = d.status.rollout
    assert ro is not None and ro.revision == "c" and ro.state == "WaitingForReady" and ro.failed_checks == 0


def test_spec_back_to_stable_drops_canary() -> None:
    sim = stable_sim()
    sim.health["b"] = READY
    sim.reconcile()
    sim.target = "a"
    d = sim.reconcile()
    assert d.weights == {"a": 100} and d.canary is None and d.status.rollout is None
    assert any(e[1] == "RolloutSuperseded" for e in d.events)


def test_no_traffic_never_advances_on_time_alone() -> None:
    sim = stable_sim()
    sim.health["b"] = READY
    sim.reconcile()
    sim.run(300, rate=0)
    assert sim.status.canary_weight == 20
    la = sim.status.last_analysis
    assert la is not None and la.verdict == "Inconclusive" and "0 of 10" in la.message


def test_unreadable_metrics_are_inconclusive_not_failures() -> None:
    sim = stable_sim()
    sim.health["b"] = READY
    sim.reconcile()
    sim.metrics_up = False
    sim.run(100)
    assert sim.status.canary_weight == 20
    assert sim.status.rollout is not None and sim.status.rollout.failed_checks == 0
    assert sim.status.last_analysis is not None and "unavailable" in sim.status.last_analysis.message
    sim.metrics_up = True
    sim.run(200, rate=4)
    assert sim.status.stable_revision == "b"


def test_slow_canary_fails_latency_threshold() -> None:
    sim = stable_sim(spec_=canary_spec(maxP95LatencyMilliseconds=500))
    sim.health["b"] = READY
    sim.slow["b"] = 2.0
    sim.reconcile()
    sim.run(60, rate=4)
    assert sim.status.rollout is not None and sim.status.rollout.state == "Aborted"
    assert "p95 latency" in (sim.status.rollout.abort_reason or "")


def test_resume_from_serialized_status_at_every_reconcile() -> None:
    """An operator restart between any two reconciles: status round-trips through JSON, decisions equal."""
    straight = stable_sim()
    straight.health["b"] = READY
    restarted = stable_sim()
    restarted.health["b"] = READY
    for _ in range(40):
        for sim in (straight, restarted):
            sim.serve(5, rate=4)
            sim.reconcile()
        wire = restarted.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        restarted.status = LanguageModelStatus.model_validate(wire)
        assert straight.last is not None and restarted.last is not None
        assert straight.last.weights == restarted.last.weights
    assert restarted.status.stable_revision == "b"


def test_counter_reset_is_handled() -> None:
    sim = stable_sim()
    sim.health["b"] = READY
    sim.reconcile()
    sim.run(20, rate=4)
    sim.counters.clear()  # the Router's stats actor restarted ...
    sim.serve(5, rate=4)
    d = decide_traffic(
        TrafficInput(
            spec=sim.spec,
            status=sim.status,
            target_revision="b",
            health=sim.health,
            metrics=None if sim.snapshot() is None else _new_epoch(sim),
            controls=Controls(),
            now=sim.now + timedelta(seconds=10),
        )
    )
    assert d.status.last_analysis is not None and d.status.last_analysis.verdict != "Fail"


def _new_epoch(sim: Sim):  # type: ignore[no-untyped-def]
    snap = sim.snapshot()
    assert snap is not None
    from dataclasses import replace

    return replace(snap, epoch="e2")


@pytest.mark.parametrize(
    ("verdict", "expected_state", "weights"),
    [
        ("Pass", "Progressing", {"a": 80, "b": 20}),
        ("Fail", "Aborted", {"a": 100}),
        ("Inconclusive", "QualityGate", {"a": 100, "b": 0}),
    ],
)
def test_quality_gate_runs_before_any_traffic(
    verdict: str, expected_state: str, weights: dict[str, int]
) -> None:
    gate = {
        "configMapRef": {"name": "eval", "key": "set.jsonl"},
        "metric": "perplexity",
        "maxDegradation": 0.1,
    }
    sim = stable_sim(spec_=spec({"qualityGate": gate, "steps": [{"weight": 20}]}))
    sim.health["b"] = READY
    d = sim.reconcile()
    assert d.weights == {"a": 100, "b": 0}
    assert d.status.rollout is not None and d.status.rollout.state == "QualityGate"
    result = QualityGateResult(
        revision="b",
        metric="perplexity",
        canary=10.0,
        stable=9.0,
        degradation=0.11,
        samples=4,
        verdict=verdict,
        message="ppl 10.0 vs 9.0",
        time=sim.now,  # type: ignore[arg-type]
    )
    d = decide_traffic(
        TrafficInput(sim.spec, sim.status, "b", sim.health, sim.snapshot(), Controls(), sim.now, result)
    )
    assert d.weights == weights
    assert d.status.rollout is not None and d.status.rollout.state == expected_state
    assert d.status.rollout.quality_gate == result
