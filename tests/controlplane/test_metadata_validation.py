"""The real API server on the shared metadata table (tests/support/metadata_cases.py): it refuses each invalid
case naming the same field with the same words local mode uses, and accepts each valid one, so a file that
``lmops up`` serves is one ``kubectl apply`` takes and the other way round."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from lmops_operator.api import GROUP, PLURAL, VERSION
from tests.support.controlplane import ControlPlane
from tests.support.metadata_cases import INVALID_METADATA, VALID_METADATA, MetadataCase


@pytest.fixture(scope="module")
def namespace(controlplane: ControlPlane) -> Iterator[str]:
    name = f"meta-{uuid.uuid4().hex[:6]}"
    controlplane.kubectl("create", "namespace", name)
    yield name
    controlplane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def api(controlplane: ControlPlane) -> Iterator[client.ApiClient]:
    api_client = controlplane.api_client()
    yield api_client
    api_client.close()


def _create_model(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> Any:
    return client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body, dry_run="All", field_validation="Strict"
    )


def _create_namespace(api: client.ApiClient, name: str) -> Any:
    return client.CoreV1Api(api).create_namespace({"metadata": {"name": name}}, dry_run="All")


@pytest.mark.parametrize("case", INVALID_METADATA, ids=lambda c: c.id)
def test_the_server_refuses_the_same_metadata(
    api: client.ApiClient, namespace: str, case: MetadataCase
) -> None:
    body = case.object()
    with pytest.raises(ApiException) as info:
        if case.path == "metadata.namespace":
            _create_namespace(api, body["metadata"]["namespace"])  # the rule a namespace's name must meet
        else:
            _create_model(api, namespace, body)
    assert info.value.status == 422, info.value.body
    message = str(json.loads(info.value.body)["message"])
    assert case.message in message, message
    if case.path != "metadata.namespace":
        assert case.path in message, message


@pytest.mark.parametrize("case", VALID_METADATA, ids=lambda c: c.id)
def test_the_server_accepts_the_same_metadata(
    controlplane: ControlPlane, api: client.ApiClient, namespace: str, case: MetadataCase
) -> None:
    body = case.object()
    target = body["metadata"].setdefault("namespace", namespace)
    if target != namespace:
        controlplane.kubectl("create", "namespace", target)
    try:
        created = _create_model(api, target, body)
    finally:
        if target != namespace:
            controlplane.kubectl("delete", "namespace", target, "--wait=false", check=False)
    assert created["metadata"]["name"] == body["metadata"]["name"]
