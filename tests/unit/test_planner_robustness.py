"""Bad input never crashes the planner: any spec the API server accepts, any previous status the operator
wrote, and ANY RayService status (KubeRay's, or garbage someone patched in) yields a plan or one of the two
errors the reconcile reports in status (PolicyViolation, BrokenChildren)."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmops_operator.planning.decide import BrokenChildren, PolicyViolation
from lmops_operator.planning.plan import Observed, plan
from tests.support.languagemodel_strategies import valid_specs
from tests.unit.planner_helpers import SETTINGS, T0, kuberay_status, model

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
    max_leaves=12,
)
KEYS = st.sampled_from(
    ["conditions", "numServeEndpoints", "activeServiceStatus", "pendingServiceStatus", "applicationStatuses"]
)
# Plausible shapes with wrong types inside, and plain garbage.
STATUSES = st.one_of(
    st.none(),
    JSON,
    st.dictionaries(KEYS, JSON, max_size=4),
    st.builds(
        lambda apps, ready, endpoints: {**kuberay_status(apps, ready=ready), "numServeEndpoints": endpoints},
        st.dictionaries(
            st.sampled_from(["lm", "rev-a", "rev-b"]),
            st.sampled_from(["RUNNING", "DEPLOY_FAILED", "UNHEALTHY", "DEPLOYING", ""]),
        ),
        st.booleans(),
        st.one_of(st.integers(0, 3), JSON),
    ),
)


def _ray_service(status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "valid"}, "spec": {"serveConfigV2": "applications: []"}, "status": status}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=valid_specs(), primary=STATUSES, standby=STATUSES)
def test_plan_never_raises_unexpected_errors(spec: dict[str, Any], primary: Any, standby: Any) -> None:
    body = {"apiVersion": "lmops.io/v1alpha1", "kind": "LanguageModel", "metadata": {"name": "valid"}}
    lm = model({**body, "spec": spec})
    observed = Observed(now=T0, ray_service=_ray_service(primary), standby_ray_service=_ray_service(standby))
    try:
        first = plan(lm, observed, SETTINGS)
    except (PolicyViolation, BrokenChildren):
        return
    # and again from the status it wrote, later (a restart with whatever the world looks like then)
    again = model({**body, "spec": spec}, status=first.status)
    later = Observed(now=T0 + timedelta(seconds=3600), ray_service=_ray_service(standby))
    with contextlib.suppress(PolicyViolation, BrokenChildren):
        plan(again, later, SETTINGS)


def test_quantities_the_crd_admits_but_no_replica_fits_are_refused_not_raised() -> None:
    body = {"apiVersion": "lmops.io/v1alpha1", "kind": "LanguageModel", "metadata": {"name": "valid"}}
    for memory in ("1e99999999", "9Ei", "99999999999999999999"):  # past int64, as Kubernetes caps them
        spec = {"model": {"source": "builtin://tiny"}, "runtime": {"gpus": 0, "memory": memory}}
        with pytest.raises(PolicyViolation) as info:
            plan(model({**body, "spec": spec}), Observed(now=T0), SETTINGS)
        assert info.value.reason == "InvalidResources"
    # a decimal exponent is a valid Kubernetes quantity pattern: parsed, not refused
    ok = {"model": {"source": "builtin://tiny"}, "runtime": {"gpus": 0, "memory": "2e9."}}
    assert plan(model({**body, "spec": ok}), Observed(now=T0), SETTINGS).objects
