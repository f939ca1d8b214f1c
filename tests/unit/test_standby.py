"""Standby cluster failover (planning.standby): objects, zone placement, the Service's switch and back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from lmops_operator.api.status import LanguageModelStatus, StandbyStatus
from lmops_operator.names import MODEL_LABEL, RAY_SERVE_LABEL
from lmops_operator.planning.plan import Observed, plan
from lmops_operator.planning.standby import (
    STANDBY_LABEL,
    ZONE_LABEL,
    decide_serving,
    standby_ray_service_name,
)
from lmops_operator.planning.status import RayServiceView
from tests.unit.planner_helpers import SETTINGS, T0, example, kuberay_status, model


def _view(endpoints: int) -> RayServiceView:
    return RayServiceView(exists=True, serve_endpoints=endpoints)


def _templates(ray_service: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = ray_service["spec"]["rayClusterConfig"]
    return [g["template"] for g in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]]


def _ray_services(body: dict[str, Any], **observed: Any) -> tuple[list[dict[str, Any]], Any]:
    result = plan(model(body, status=observed.pop("status", None)), Observed(now=T0, **observed), SETTINGS)
    return [o for o in result.objects if o["kind"] == "RayService"], result


def test_standby_is_the_primary_pinned_to_its_zone_and_the_primary_avoids_it() -> None:
    (primary, standby), result = _ray_services(example("failover"))
    assert standby["metadata"]["name"] == "chat-standby" == standby_ray_service_name("chat")
    assert standby["spec"]["serveConfigV2"] == primary["spec"]["serveConfigV2"]
    assert standby["metadata"]["ownerReferences"] == primary["metadata"]["ownerReferences"]
    for template in _templates(standby):
        assert template["spec"]["nodeSelector"][ZONE_LABEL] == "us-east-1b"
        assert template["metadata"]["labels"] == {STANDBY_LABEL: "chat"}
        assert "affinity" not in template["spec"]
    for template in _templates(primary):
        assert template["metadata"]["labels"] == {MODEL_LABEL: "chat"}
        terms = template["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        expression = terms["nodeSelectorTerms"][0]["matchExpressions"][0]
        assert expression == {"key": ZONE_LABEL, "operator": "NotIn", "values": ["us-east-1b"]}
    workers = _templates(standby)[1]["spec"]["nodeSelector"]
    assert workers["lmops.io/pool"] == "serving"  # the spec's own selector is kept
    service = next(o for o in result.objects if o["kind"] == "Service")
    assert service["spec"]["selector"] == {MODEL_LABEL: "chat", RAY_SERVE_LABEL: "true"}


def test_without_standby_nothing_changes_and_a_leftover_standby_is_deleted() -> None:
    body = example("failover")
    body["spec"]["failover"]["standby"] = {"enabled": False}
    leftover = {"metadata": {"name": "chat-standby"}}
    services, result = _ray_services(body, standby_ray_service=leftover)
    assert [s["metadata"]["name"] for s in services] == ["chat"]
    assert "affinity" not in _templates(services[0])[0]["spec"]
    assert result.obsolete_ray_services == ["chat-standby"]
    assert result.status.standby is None
    _, quiet = _ray_services(body)
    assert quiet.obsolete_ray_services == []


def test_switches_after_the_primary_is_unready_for_switch_after_seconds_and_back() -> None:
    name = "chat-standby"
    first = decide_serving(None, name, _view(0), _view(1), 60, T0)
    assert first.status.serving == "primary" and first.status.primary_unready_since == T0
    assert first.requeue_after == 60 and first.events == []
    # 59 s later: still counting (the start comes from the previous status, as after a restart)
    later = decide_serving(first.status, name, _view(0), _view(1), 60, T0 + timedelta(seconds=59))
    assert later.status.serving == "primary" and later.requeue_after == 1
    switched = decide_serving(later.status, name, _view(0), _view(1), 60, T0 + timedelta(seconds=60))
    assert switched.status.serving == "standby" and switched.status.switched_at == T0 + timedelta(seconds=60)
    assert [e[1] for e in switched.events] == ["FailoverToStandby"]
    stays = decide_serving(switched.status, name, _view(0), _view(1), 60, T0 + timedelta(seconds=90))
    assert stays.status.serving == "standby" and stays.events == []
    back = decide_serving(stays.status, name, _view(2), _view(1), 60, T0 + timedelta(seconds=95))
    assert back.status.serving == "primary" and back.status.primary_unready_since is None
    assert [e[1] for e in back.events] == ["PrimaryRecovered"]


def test_a_primary_that_recovers_in_time_resets_the_countdown() -> None:
    name = "chat-standby"
    first = decide_serving(None, name, _view(0), _view(1), 60, T0)
    ok = decide_serving(first.status, name, _view(1), _view(1), 60, T0 + timedelta(seconds=30))
    assert ok.status.primary_unready_since is None and ok.status.serving == "primary"
    again = decide_serving(ok.status, name, _view(0), _view(1), 60, T0 + timedelta(seconds=80))
    assert again.status.serving == "primary" and again.status.primary_unready_since == T0 + timedelta(
        seconds=80
    )


def test_never_switches_to_a_standby_that_is_down_too() -> None:
    previous = StandbyStatus(ray_service_name="x", primary_unready_since=T0)
    result = decide_serving(previous, "x", _view(0), _view(0), 60, T0 + timedelta(seconds=600))
    assert result.status.serving == "primary" and result.requeue_after is None
    assert "no ready serve endpoint either" in result.status.message


def test_plan_points_the_service_at_the_standby_from_status_and_requeues_for_the_countdown() -> None:
    body = example("failover")
    primary_down = {"status": kuberay_status({"lm": "RUNNING"}, ready=False)}
    standby_up = {"metadata": {"name": "chat-standby"}, "status": kuberay_status({"lm": "RUNNING"})}
    since = T0 - timedelta(seconds=61)
    status = LanguageModelStatus(
        standby=StandbyStatus(ray_service_name="chat-standby", primary_unready_since=since)
    )
    _, result = _ray_services(body, status=status, ray_service=primary_down, standby_ray_service=standby_up)
    service = next(o for o in result.objects if o["kind"] == "Service")
    assert service["spec"]["selector"] == {STANDBY_LABEL: "chat", RAY_SERVE_LABEL: "true"}
    assert result.status.standby is not None and result.status.standby.serving == "standby"
    assert ("Warning", "FailoverToStandby") in [(e[0], e[1]) for e in result.events]
    counting = LanguageModelStatus(
        standby=StandbyStatus(
            ray_service_name="chat-standby", primary_unready_since=T0 - timedelta(seconds=50)
        )
    )
    _, waiting = _ray_services(
        body, status=counting, ray_service=primary_down, standby_ray_service=standby_up
    )
    assert waiting.requeue_after is not None and waiting.requeue_after <= 10


def test_status_says_when_the_warm_fallback_takes_the_traffic_of_a_failed_stable() -> None:
    from lmops_operator.planning.status import RayServiceView, assess
    from lmops_operator.planning.traffic import RevisionHealth

    spec = model(example("failover")).spec
    status = LanguageModelStatus(stable_revision="new", fallback_revision="old")
    health = {"new": RevisionHealth(False, True, "rev-new UNHEALTHY"), "old": RevisionHealth(True, False)}
    view = RayServiceView(exists=True, ready=True, serve_endpoints=1)
    result = assess(spec, status, "new", view, health)
    assert (result.phase, result.reason, result.ready) == ("Degraded", "FailedOverToFallback", True)
    assert "warm fallback old takes its traffic" in result.message
    cold = {**health, "old": RevisionHealth(False, False, "starting")}
    assert assess(spec, status, "new", view, cold).reason == "StableUnhealthy"


def test_scaled_to_zero_only_when_no_replica_can_be_left() -> None:
    from lmops_operator.planning.status import RayServiceView, assess
    from lmops_operator.planning.traffic import RevisionHealth

    status = LanguageModelStatus(stable_revision="r")
    health = {"r": RevisionHealth(True, False)}
    idle = RayServiceView(exists=True, ready=True, serve_endpoints=1, ready_workers=0)
    gpu = model(example("scale-to-zero")).spec
    assert assess(gpu, status, "r", idle, health).phase == "ScaledToZero"
    busy = RayServiceView(exists=True, ready=True, serve_endpoints=1, ready_workers=1)
    assert assess(gpu, status, "r", busy, health).phase == "Ready"
    # CPU replicas may run on the head (it advertises CPUs): zero workers says nothing about replicas
    cpu = gpu.model_copy(update={"runtime": gpu.runtime.model_copy(update={"gpus": 0})})
    assert assess(cpu, status, "r", idle, health).phase == "Ready"
