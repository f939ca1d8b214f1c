"""The LanguageModel CRD on a real kube-apiserver: examples accepted, invalid objects rejected with the field
and the rule's message, defaults filled as the models fill them, kubectl explain and printer columns work,
and specs drawn from the models round-trip through the server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from lmops_operator.api import GROUP, PLURAL, VERSION, LanguageModelSpec, dump_spec, load_language_model
from lmops_operator.api.crd import CRD_NAME
from testkit.controlplane import ControlPlane
from tests.support.languagemodel_cases import INVALID_CASES, InvalidCase, base_object
from tests.support.languagemodel_strategies import valid_specs
from tests.support.metadata_cases import INVALID_METADATA, VALID_METADATA, MetadataCase

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def namespace(controlplane: ControlPlane) -> Iterator[str]:
    name = f"api-{uuid.uuid4().hex[:6]}"
    controlplane.kubectl("create", "namespace", name)
    yield name
    controlplane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def objects(controlplane: ControlPlane) -> Iterator[client.CustomObjectsApi]:
    api = controlplane.api_client()
    yield client.CustomObjectsApi(api)
    api.close()


def _create(api: client.CustomObjectsApi, namespace: str, body: dict[str, Any], *, dry_run: bool) -> Any:
    return api.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        body,
        dry_run="All" if dry_run else None,
        field_validation="Strict",
    )


def _rejection(api: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as info:
        _create(api, namespace, body, dry_run=True)
    assert info.value.status in (400, 422), info.value.body
    return str(json.loads(info.value.body)["message"])


def test_crd_is_established(controlplane: ControlPlane) -> None:
    out = controlplane.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout
    crd = json.loads(out)
    established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert established["Established"] == "True"
    assert established.get("NonStructuralSchema", "False") != "True"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_accepted(
    controlplane: ControlPlane, namespace: str, objects: client.CustomObjectsApi, path: Path
) -> None:
    body = yaml.safe_load(path.read_text())
    dry = _create(objects, namespace, body, dry_run=True)
    assert dry["metadata"]["name"] == body["metadata"]["name"]
    created = _create(objects, namespace, body, dry_run=False)
    # What the server stored (defaults filled in) is exactly what the models make of the example.
    assert created["spec"] == dump_spec(load_language_model(body).spec)
    assert load_language_model(created).spec == load_language_model(body).spec
    # kubectl's own strict client-side path accepts it too.
    out = controlplane.kubectl(
        "apply", "--server-side", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", str(path)
    ).stdout
    assert body["metadata"]["name"] in out


@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda c: c.id)
def test_invalid_objects_are_rejected(
    namespace: str, objects: client.CustomObjectsApi, case: InvalidCase
) -> None:
    message = _rejection(objects, namespace, case.object(f"bad-{case.id}"[:40]))
    assert case.message in message, message
    if case.path != "metadata.name":  # a rule on the root object has no narrower field path
        assert case.path in message, message


def test_unknown_field_rejected_by_kubectl_strict(controlplane: ControlPlane, namespace: str) -> None:
    body = base_object("strict")
    body["spec"]["model"]["sorce"] = "typo"
    result = controlplane.kubectl(
        "apply", "--validate=strict", "-n", namespace, "-f", "-", input=yaml.safe_dump(body), check=False
    )
    assert result.returncode != 0
    assert 'unknown field "spec.model.sorce"' in result.stderr


def test_server_applies_the_model_defaults(namespace: str, objects: client.CustomObjectsApi) -> None:
    body = base_object("defaults")
    created = _create(objects, namespace, body, dry_run=True)
    spec = created["spec"]
    assert spec == dump_spec(LanguageModelSpec.model_validate(body["spec"]))
    assert spec["rollout"]["steps"] == [
        {"weight": 10, "pauseSeconds": 60},
        {"weight": 50, "pauseSeconds": 60},
    ]
    assert spec["rollout"]["autoRollback"] is True and spec["rollout"]["revisionHistoryLimit"] == 10
    assert spec["runtime"]["gpuResourceName"] == "nvidia.com/gpu"
    assert spec["model"]["trustRemoteCode"] is False
    assert spec["model"]["generation"]["strategy"] == "greedy"


def test_kubectl_explain_reads_the_descriptions(controlplane: ControlPlane) -> None:
    model = controlplane.kubectl("explain", "languagemodel.spec.model").stdout
    assert "What to serve" in model or "The model to serve" in model
    assert "builtin://tiny" in controlplane.kubectl("explain", "lm.spec.model.source").stdout
    rollout = controlplane.kubectl("explain", "languagemodel.spec.rollout").stdout
    for field in ("strategy", "steps", "analysis", "autoRollback", "revisionHistoryLimit"):
        assert field in rollout


def test_get_shows_printer_columns_and_status_subresource(
    controlplane: ControlPlane, namespace: str, objects: client.CustomObjectsApi
) -> None:
    body = base_object("columns")
    _create(objects, namespace, body, dry_run=False)
    status = {
        "phase": "Progressing",
        "stableRevision": "abc123",
        "canaryRevision": "def456",
        "canaryWeight": 25,
        "readyReplicas": 3,
        "traffic": [{"revision": "abc123", "weight": 75}, {"revision": "def456", "weight": 25}],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "StableServing",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "columns", {"status": status}
    )
    out = controlplane.kubectl("get", "lm", "columns", "-n", namespace).stdout.splitlines()
    header = ["NAME", "SOURCE", "TASK", "PHASE", "STABLE", "CANARY", "WEIGHT", "REPLICAS", "READY", "AGE"]
    assert out[0].split() == header
    assert out[1].split()[:9] == [
        "columns", "builtin://tiny", "generate", "Progressing", "abc123", "def456", "25", "3", "True",
    ]  # fmt: skip
    # The category lists it too, and a spec write cannot change the status.
    assert "columns" in controlplane.kubectl("get", "lmops", "-n", namespace).stdout
    stored = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "columns")
    stored["status"]["phase"] = "Failed"
    updated = objects.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "columns", stored)
    assert updated["status"]["phase"] == "Progressing"
    assert load_language_model(updated).status is not None


def test_invalid_status_is_rejected(namespace: str, objects: client.CustomObjectsApi) -> None:
    _create(objects, namespace, base_object("badstatus"), dry_run=False)
    with pytest.raises(ApiException) as info:
        objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, "badstatus", {"status": {"phase": "Exploded"}}
        )
    assert "status.phase" in json.loads(info.value.body)["message"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=valid_specs())
def test_generated_specs_round_trip_through_the_server(
    namespace: str, objects: client.CustomObjectsApi, raw: dict[str, Any]
) -> None:
    body = {**base_object("generated"), "spec": raw}
    try:
        returned = _create(objects, namespace, body, dry_run=True)
    except ApiException as exc:
        pytest.fail(f"server rejected a spec the models accept: {exc.body}\n{json.dumps(raw)}")
    assert load_language_model(returned).spec == LanguageModelSpec.model_validate(raw)


# ---- metadata: the API server's own rules, one table with local mode (tests/support/metadata_cases.py) ----


@pytest.mark.parametrize("case", INVALID_METADATA, ids=lambda c: c.id)
def test_the_server_refuses_the_metadata_local_mode_refuses(
    controlplane: ControlPlane, namespace: str, objects: client.CustomObjectsApi, case: MetadataCase
) -> None:
    body = case.object()
    if case.path == "metadata.namespace":  # the rule a namespace's name must meet, where it is checked
        result = controlplane.kubectl(
            "create", "namespace", body["metadata"]["namespace"], "--dry-run=server", check=False
        )
        assert result.returncode != 0 and case.message in result.stderr, result.stderr
        return
    message = _rejection(objects, namespace, body)
    assert case.message in message and case.path in message, message


@pytest.mark.parametrize("case", VALID_METADATA, ids=lambda c: c.id)
def test_the_server_accepts_the_metadata_local_mode_accepts(
    controlplane: ControlPlane, namespace: str, objects: client.CustomObjectsApi, case: MetadataCase
) -> None:
    body = case.object()
    target = body["metadata"].setdefault("namespace", namespace)
    if target != namespace:
        controlplane.kubectl("create", "namespace", target)
    try:
        created = _create(objects, target, body, dry_run=True)
    finally:
        if target != namespace:
            controlplane.kubectl("delete", "namespace", target, "--wait=false", check=False)
    assert created["metadata"]["name"] == body["metadata"]["name"]
