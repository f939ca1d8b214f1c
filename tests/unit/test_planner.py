"""The pure planner: revisions, history, status mapping and the objects it asks for, step by step."""

from __future__ import annotations

import pytest

from lmops_operator.api import LanguageModelStatus
from lmops_operator.names import MAX_RAY_SERVICE_NAME, ray_service_name
from lmops_operator.planning import status as st
from lmops_operator.planning.decide import (
    BrokenChildren,
    PolicyViolation,
    StoredRevision,
    kept_revisions,
    number_revision,
)
from lmops_operator.planning.plan import Observed, deployed_revisions, plan
from lmops_operator.planning.revision import revision_data, revision_name
from lmops_operator.planning.traffic import TrafficDecision
from lmops_operator.settings import Settings
from tests.support.languagemodel_cases import merge
from tests.unit.planner_helpers import (
    SETTINGS,
    T0,
    World,
    by_kind,
    example,
    kuberay_status,
    model,
    running,
)

# ------------------------------------------------------------------------------------------ revisions


def _revision(change: dict) -> str:  # type: ignore[type-arg]
    return revision_name(model(merge(example("gpt2-canary"), {"spec": change})).spec)


BASE = _revision({})


def test_revision_name_is_stable_and_dns_safe() -> None:
    assert _revision({}) == BASE
    assert len(BASE) == 10
    assert BASE[0].isalpha() and BASE.isalnum() and BASE.lower() == BASE


@pytest.mark.parametrize(
    "change",
    [
        {"autoscaling": {"minReplicas": 2, "maxReplicas": 9, "targetOngoingRequests": 8}},
        {"rollout": {"strategy": "Immediate", "revisionHistoryLimit": 3}},
        {"failover": {"keepPreviousWarm": True}},
        {"runtime": {"image": "ghcr.io/lmops/runtime:9.9.9", "tolerations": []}},
        {"serving": {"maxOngoingRequests": 128, "rateLimitPerMinute": 5, "maxTokens": 2048}},
        {"serving": {"streamIntervalMilliseconds": 0}},
    ],
    ids=["autoscaling", "rollout", "failover", "image", "request-limits", "stream-interval"],
)
def test_revision_unchanged_by_non_model_edits(change: dict) -> None:  # type: ignore[type-arg]
    assert _revision(change) == BASE


@pytest.mark.parametrize(
    "change",
    [
        {"model": {"revision": "main"}},
        {"model": {"dtype": "bfloat16"}},
        {"model": {"generation": {"temperature": 0.5}}},
        {"serving": {"maxBatchSize": 4}},
        {"runtime": {"gpus": 2}},
        {"runtime": {"memory": "24Gi"}},
    ],
    ids=["weights-revision", "dtype", "generation", "batching", "gpus", "memory"],
)
def test_revision_changed_by_replica_edits(change: dict) -> None:  # type: ignore[type-arg]
    assert _revision(change) != BASE


def test_revision_data_rebuilds_server_args() -> None:
    from lmops_operator.planning.revision import server_args

    lm = model(example("bert-classify"))
    args = server_args("sentiment", "abc", revision_data(lm.spec))
    assert args.model.labels == ["negative", "neutral", "positive"]
    assert args.model.source == "pvc://models/bert-base-sentiment"
    assert args.batching.max_batch_size == 32
    assert args.batching.batch_wait_timeout_s == pytest.approx(0.005)


# ---------------------------------------------------------------------------------------------- names


def test_ray_service_name_fits_kuberay_limit() -> None:
    assert ray_service_name("gpt2") == "gpt2"
    long_a, long_b = "m" * 60 + "a", "m" * 60 + "b"
    assert len(ray_service_name(long_a)) <= MAX_RAY_SERVICE_NAME
    assert ray_service_name(long_a) != ray_service_name(long_b)
    assert ray_service_name("x" * MAX_RAY_SERVICE_NAME) == "x" * MAX_RAY_SERVICE_NAME


def test_longest_allowed_model_name_plans() -> None:
    body = merge(example("tiny"), {"metadata": {"name": "a" * 40}})
    result = plan(model(body), Observed(now=T0), SETTINGS)
    assert len(by_kind(result, "RayService")[0]["metadata"]["name"]) <= MAX_RAY_SERVICE_NAME


# -------------------------------------------------------------------------------------------- history


def _stored(n: int) -> dict[str, StoredRevision]:
    return {
        f"r{i}": StoredRevision(f"r{i}", f"m-r{i}", i, {"model": {"source": "x"}}) for i in range(1, n + 1)
    }


def test_history_keeps_newest_and_protected() -> None:
    numbers = {r.revision: r.number for r in _stored(12).values()}
    decision = TrafficDecision(
        weights={"r2": 90, "r3": 10}, stable="r2", canary="r3", fallback=None, status=LanguageModelStatus()
    )
    kept = kept_revisions(numbers, 5, "r4", decision)
    assert kept == {"r2", "r3", "r4", "r8", "r9", "r10", "r11", "r12"}


def test_revision_numbers_only_grow() -> None:
    assert number_revision({}, "a", "hf://x")[0] == 1
    assert number_revision({"a": 1, "b": 2}, "c", "hf://x") == (
        3,
        [("Normal", "RevisionCreated", "revision c (#3) of hf://x")],
    )
    assert number_revision({"a": 1, "b": 2}, "b", None) == (2, [])
    # Going back to an older spec numbers it as the newest, as StatefulSets do.
    assert number_revision({"a": 1, "b": 2}, "a", None) == (
        3,
        [("Normal", "RevisionRestored", "revision a is current again as #3")],
    )


def test_world_garbage_collects_past_history_limit() -> None:
    world = World(
        merge(example("tiny"), {"spec": {"rollout": {"revisionHistoryLimit": 2, "strategy": "Immediate"}}})
    )
    first = world.step()
    world.step(running(first))
    for i in range(4):
        world.edit({"spec": {"model": {"revision": f"v{i}"}}})
        result = world.step(running(world.step()))
        world.step(running(result))
    assert len(world.revisions) <= 3  # limit 2 + the stable one still referenced while switching
    numbers = sorted(r["revision"] for r in world.revisions.values())
    assert numbers[-1] == 5
    assert world.status is not None and world.status.revisions is not None
    assert [r.number for r in world.status.revisions] == numbers


# ---------------------------------------------------------------------------------- status mapping


def test_read_ready_service() -> None:
    view = st.read_ray_service({"status": kuberay_status({"lm": "RUNNING", "rev-a": "RUNNING"})})
    assert view.ready is True and not view.upgrading and view.ready_workers == 1
    health = st.revision_health(view, ["a", "b"])
    assert health["a"].ready and not health["a"].failed
    assert not health["b"].ready and not health["b"].failed and "not reported" in health["b"].message


def test_read_upgrade_prefers_pending_cluster() -> None:
    status = kuberay_status(
        {"lm": "RUNNING", "rev-a": "RUNNING"}, upgrading=True, pending_apps={"rev-a": "DEPLOYING"}
    )
    view = st.read_ray_service({"status": status})
    assert view.upgrading
    assert not st.revision_health(view, ["a"])["a"].ready


def test_read_deploy_failed() -> None:
    view = st.read_ray_service({"status": kuberay_status({"lm": "RUNNING", "rev-a": "DEPLOY_FAILED"})})
    health = st.revision_health(view, ["a"])["a"]
    assert health.failed and "DEPLOY_FAILED" in health.message


@pytest.mark.parametrize(
    "status",
    [
        "weird",
        {"conditions": "nope"},
        {"activeServiceStatus": {"applicationStatuses": ["x"]}},
        {"activeServiceStatus": {"applicationStatuses": {"rev-a": {"state": "?"}}}},
        {"numServeEndpoints": "many"},
    ],
)
def test_read_unknown_shapes_are_problems_not_exceptions(status: object) -> None:
    view = st.read_ray_service({"status": status})
    assert view.exists and view.problems


def test_unknown_shape_plans_degraded() -> None:
    world = World(example("tiny"))
    world.step()
    result = world.step({"activeServiceStatus": {"applicationStatuses": ["broken"]}})
    assert result.status.phase == "Degraded"
    ready = next(c for c in result.status.conditions or [] if c.type == "Ready")
    assert ready.status == "False" and ready.reason == "UnexpectedRayServiceStatus"


# ------------------------------------------------------------------------------------ plan sequences


def test_first_deploy_then_ready() -> None:
    world = World(example("tiny"))
    first = world.step()
    assert first.status.phase == "Deploying"
    assert ("Normal", "RevisionCreated") in {(k, r) for k, r, _ in first.events}
    assert {o["kind"] for o in first.objects} == {
        "ControllerRevision",
        "RayService",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    ready = world.step(running(first))
    assert ready.status.phase == "Ready"
    assert [(k, r) for k, r, _ in ready.events] == [("Normal", "Ready")]  # one transition, one event
    assert ready.status.stable_revision == first.target_revision
    conditions = {c.type: c for c in ready.status.conditions or []}
    assert conditions["Ready"].status == "True" and conditions["Ready"].observed_generation == 1
    assert conditions["Degraded"].status == "False"
    assert ready.status.endpoint == "http://tiny.models.svc:8000/v1"
    assert ready.status.ray_service_name == "tiny"
    assert ready.status.observed_generation == 1
    again = world.step(running(first))
    assert again.status == ready.status.model_copy(update={"rollout": again.status.rollout})
    assert not again.events


def test_ready_condition_time_kept_while_unchanged() -> None:
    world = World(example("tiny"))
    first = world.step()
    one = world.step(running(first))
    two = world.step(running(first), seconds=300)
    t1 = next(c for c in one.status.conditions or [] if c.type == "Ready").last_transition_time
    t2 = next(c for c in two.status.conditions or [] if c.type == "Ready").last_transition_time
    assert t1 == t2


def test_model_edit_makes_new_revision_autoscaling_edit_does_not() -> None:
    world = World(example("gpt2-canary"))
    first = world.step()
    world.step(running(first))
    world.edit({"spec": {"autoscaling": {"maxReplicas": 6}}})
    scaled = world.step(running(first))
    assert scaled.target_revision == first.target_revision and len(world.revisions) == 1
    worker = by_kind(scaled, "RayService")[0]["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert worker["maxReplicas"] == 6 * 2
    world.edit({"spec": {"model": {"revision": "main"}}})
    edited = world.step(running(first))
    assert edited.target_revision != first.target_revision and len(world.revisions) == 2
    assert ("Normal", "RevisionCreated") in {(k, r) for k, r, _ in edited.events}
    assert set(edited.weights) == {first.target_revision, edited.target_revision}
    assert edited.status.phase in ("Progressing", "Ready")


def test_failed_first_revision() -> None:
    world = World(example("tiny"))
    first = world.step()
    result = world.step(running(first, failed=frozenset({first.target_revision})))
    assert result.status.phase == "Failed"
    ready = next(c for c in result.status.conditions or [] if c.type == "Ready")
    assert ready.status == "False" and "DEPLOY_FAILED" in ready.message


def test_stable_failing_is_degraded() -> None:
    world = World(example("tiny"))
    first = world.step()
    world.step(running(first))
    result = world.step(running(first, failed=frozenset({first.target_revision}), ready=False))
    assert result.status.phase == "Degraded"
    assert ("Warning", "Degraded") in {(k, r) for k, r, _ in result.events}


def test_image_change_is_cluster_upgrade() -> None:
    world = World(example("tiny"))
    first = world.step()
    world.step(running(first))
    world.edit({"spec": {"runtime": {"image": "ghcr.io/lmops/runtime:next"}}})
    upgrade = world.step(running(first))
    assert upgrade.target_revision == first.target_revision
    assert upgrade.status.cluster_upgrade == st.UPGRADE_MESSAGE_IMAGE
    assert ("Normal", "ClusterUpgrade") in {(k, r) for k, r, _ in upgrade.events}
    during = world.step(running(first, upgrading=True))
    assert during.status.cluster_upgrade == st.UPGRADE_MESSAGE_IMAGE
    done = world.step(running(first))
    assert done.status.cluster_upgrade is None
    assert ("Normal", "ClusterUpgradeDone") in {(k, r) for k, r, _ in done.events}


def test_scaled_to_zero() -> None:
    # GPU replicas only run on workers (the head advertises no CPUs), so zero workers means zero replicas.
    spec = {**example("tiny")["spec"], "autoscaling": {"minReplicas": 0}, "runtime": {"gpus": 1}}
    world = World(example("tiny") | {"spec": spec})
    first = world.step()
    result = world.step(running(first, workers=0))
    assert result.status.phase == "ScaledToZero"
    assert next(c for c in result.status.conditions or [] if c.type == "Ready").status == "True"
    assert result.status.ready_replicas == 0


def test_ready_replicas_follow_the_ready_workers_kuberay_reports() -> None:
    """The floor per revision stays put while autoscaling adds replicas; readyReplicas follows them."""
    spec = {**example("tiny")["spec"], "autoscaling": {"minReplicas": 1, "maxReplicas": 4}}
    world = World(example("tiny") | {"spec": spec})
    first = world.step()
    assert first.status.ready_replicas is None  # nothing reported yet
    for workers in (1, 3, 2):
        result = world.step(running(first, workers=workers))
        assert result.status.ready_replicas == workers
        assert [(r.ready, r.desired) for r in result.status.replicas or []] == [(1, 1)]


def test_policy_forbids_source_and_trust_remote_code() -> None:
    strict = Settings(allowed_sources=("hf://openai-community/",), allow_trust_remote_code=False)
    with pytest.raises(PolicyViolation) as denied:
        plan(model(example("tiny")), Observed(now=T0), strict)
    assert denied.value.reason == "SourceNotAllowed" and "builtin://tiny" in denied.value.message
    remote = merge(example("gpt2-canary"), {"spec": {"model": {"trustRemoteCode": True}}})
    with pytest.raises(PolicyViolation) as forbidden:
        plan(model(remote), Observed(now=T0), strict)
    assert forbidden.value.reason == "TrustRemoteCodeForbidden"
    allowed = Settings(allowed_sources=("hf://openai-community/",), allow_trust_remote_code=True)
    assert plan(model(remote), Observed(now=T0), allowed).objects


def test_missing_revision_of_deployed_traffic_is_broken_children() -> None:
    world = World(example("tiny"))
    first = world.step()
    world.step(running(first))
    world.edit({"spec": {"model": {"revision": "v2"}}})
    world.revisions.clear()
    stale_status = world.status
    with pytest.raises(BrokenChildren, match="missing"):
        plan(
            model(world.body, status=stale_status, generation=world.generation),
            Observed(now=T0, ray_service=world.ray_service, controller_revisions=[]),
            SETTINGS,
        )


def test_deployed_revisions_from_live_serve_config() -> None:
    world = World(example("tiny"))
    first = world.step()
    assert deployed_revisions(world.ray_service) == [first.target_revision]
    assert deployed_revisions({"spec": {"serveConfigV2": ":: not yaml ["}}) == []
    assert deployed_revisions(None) == []
