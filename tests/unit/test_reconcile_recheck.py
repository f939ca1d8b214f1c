"""When the operator looks at a model again with no watch event: only while something it reads is not an
event (a canary's live metrics, a standby countdown). A first deploy waits for the RayService's status, which
the RayService watch delivers, so at a thousand models deploying at once no model is polled."""

from __future__ import annotations

from datetime import UTC, datetime

from lmops_operator.api.status import LanguageModelStatus
from lmops_operator.k8s.reconcile import IDLE_RECHECK_S, recheck_after
from lmops_operator.planning import rollout as machine
from lmops_operator.planning.plan import Plan

NOW = datetime(2026, 12, 2, tzinfo=UTC)


def _plan(status: LanguageModelStatus, requeue_after: float | None = None) -> Plan:
    return Plan(
        target_revision="b",
        objects=[],
        stale_revisions=[],
        status=status,
        events=[],
        requeue_after=requeue_after,
        weights={},
    )


def test_a_first_deploy_is_not_polled() -> None:
    deploying = LanguageModelStatus(rollout=machine.start("b", NOW))
    assert recheck_after(_plan(deploying)) is None


def test_a_canary_is_looked_at_again_at_least_every_idle_recheck() -> None:
    canary = LanguageModelStatus(stable_revision="a", canary_revision="b", rollout=machine.start("b", NOW))
    assert recheck_after(_plan(canary)) == IDLE_RECHECK_S
    assert recheck_after(_plan(canary, requeue_after=5.0)) == 5.0
    aborted = LanguageModelStatus(stable_revision="a", rollout=machine.start("b", NOW))
    assert recheck_after(_plan(aborted)) == IDLE_RECHECK_S


def test_a_model_at_rest_is_not_polled() -> None:
    assert recheck_after(_plan(LanguageModelStatus(stable_revision="a"))) is None
