"""The applier's pure parts (write or skip, status patches), events, settings, logs and kopf credentials."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from lmops_operator.k8s.diff import (
    APPLIED_HASH_ANNOTATION,
    content_hash,
    is_subset,
    merge_patch,
    needs_apply,
    with_applied_hash,
)
from lmops_operator.k8s.events import event_body
from lmops_operator.k8s.peering import peering_crds, peering_object
from lmops_operator.observability import JsonFormatter
from lmops_operator.settings import DEFAULT_RUNTIME_IMAGE, Settings, SettingsError

DESIRED = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "m", "labels": {"a": "1"}},
    "spec": {"ports": [{"name": "http", "port": 8000}], "selector": {"x": "y"}},
}


def _live(desired: dict) -> dict:  # type: ignore[type-arg]
    """What the API server returns: our fields plus defaults and bookkeeping."""
    applied = with_applied_hash(desired)
    return {
        **applied,
        "metadata": {**applied["metadata"], "uid": "u", "resourceVersion": "7"},
        "spec": {
            **applied["spec"],
            "ports": [{**applied["spec"]["ports"][0], "protocol": "TCP", "targetPort": 8000}],
            "clusterIP": "10.0.0.3",
        },
    }


def test_unchanged_object_is_not_written() -> None:
    assert not needs_apply(DESIRED, _live(DESIRED))


def test_missing_changed_or_drifted_object_is_written() -> None:
    assert needs_apply(DESIRED, None)
    changed = {**DESIRED, "spec": {**DESIRED["spec"], "selector": {"x": "z"}}}
    assert needs_apply(changed, _live(DESIRED))
    drifted = _live(DESIRED)
    drifted["spec"]["selector"] = {"x": "edited-by-hand"}
    assert needs_apply(DESIRED, drifted)


def test_removed_field_is_written_although_live_is_a_superset() -> None:
    smaller = {**DESIRED, "metadata": {"name": "m"}}
    live = _live(DESIRED)
    assert is_subset(with_applied_hash(smaller)["spec"], live["spec"])
    assert needs_apply(smaller, live)  # the hash says what lmops last applied


def test_hash_annotation() -> None:
    annotated = with_applied_hash(DESIRED)
    assert annotated["metadata"]["annotations"][APPLIED_HASH_ANNOTATION] == content_hash(DESIRED)
    assert "annotations" not in DESIRED["metadata"]


def test_subset_rules() -> None:
    assert is_subset({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2, "c": 3}], "d": 4})
    assert not is_subset({"a": [1]}, {"a": [1, 2]})
    assert not is_subset({"a": True}, {"a": 1})
    assert not is_subset({"a": {"b": 1}}, {"a": "b"})


def test_merge_patch() -> None:
    live = {
        "phase": "Ready",
        "canaryRevision": "x",
        "rollout": {"step": 1, "state": "Progressing"},
        "same": [1],
    }
    desired = {"phase": "Ready", "rollout": {"step": 2}, "same": [1], "new": {"a": 1}}
    assert merge_patch(live, desired) == {
        "canaryRevision": None,
        "rollout": {"step": 2, "state": None},
        "new": {"a": 1},
    }
    assert merge_patch(desired, desired) == {}


def test_event_body() -> None:
    involved = {
        "apiVersion": "lmops.io/v1alpha1",
        "kind": "LanguageModel",
        "metadata": {"name": "m", "namespace": "ns", "uid": "u", "resourceVersion": "5"},
    }
    body = event_body(involved, "Warning", "SourceNotAllowed", "x" * 5000, datetime(2026, 1, 1, tzinfo=UTC))
    assert body["involvedObject"] == {
        "apiVersion": "lmops.io/v1alpha1", "kind": "LanguageModel", "name": "m", "namespace": "ns",
        "uid": "u", "resourceVersion": "5",
    }  # fmt: skip
    assert body["metadata"] == {"generateName": "m.", "namespace": "ns"}
    assert body["type"] == "Warning" and len(body["message"]) == 1024
    assert body["firstTimestamp"] == "2026-01-01T00:00:00Z"


def test_settings_from_env() -> None:
    settings = Settings.from_env(
        {
            "LMOPS_WATCH_NAMESPACES": "a, b,,",
            "LMOPS_ALLOWED_SOURCES": "hf://org/,s3://bucket/",
            "LMOPS_ALLOW_TRUST_REMOTE_CODE": "true",
            "LMOPS_DEFAULT_RUNTIME_IMAGE": "registry/runtime:1",
            "LMOPS_PEERING_NAME": "lmops",
            "LMOPS_LOG_LEVEL": "debug",
        }
    )
    assert settings.watch_namespaces == ("a", "b") and not settings.clusterwide
    assert settings.source_allowed("hf://org/model") and not settings.source_allowed("hf://other/model")
    assert settings.allow_trust_remote_code and settings.default_runtime_image == "registry/runtime:1"
    assert settings.peering_name == "lmops" and settings.log_level == "DEBUG"


def test_settings_defaults_and_errors() -> None:
    settings = Settings.from_env({})
    assert settings.clusterwide and settings.source_allowed("file:///anything")
    assert not settings.allow_trust_remote_code and settings.peering_name is None
    assert settings.default_runtime_image == DEFAULT_RUNTIME_IMAGE
    with pytest.raises(SettingsError, match="LMOPS_ALLOW_TRUST_REMOTE_CODE"):
        Settings.from_env({"LMOPS_ALLOW_TRUST_REMOTE_CODE": "maybe"})
    with pytest.raises(SettingsError, match="LMOPS_LOG_LEVEL"):
        Settings.from_env({"LMOPS_LOG_LEVEL": "loud"})


def test_json_logs() -> None:
    record = logging.LogRecord("lmops", logging.INFO, __file__, 1, "reconciled %s", ("m",), None)
    record.namespace = "ns"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "reconciled m" and entry["level"] == "INFO" and entry["namespace"] == "ns"


def test_peering_manifests() -> None:
    names = {crd["metadata"]["name"] for crd in peering_crds()}
    assert names == {"kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"}
    assert peering_object("p", None)["kind"] == "ClusterKopfPeering"
    assert peering_object("p", "ns")["metadata"] == {"name": "p", "namespace": "ns"}


def test_kopf_credentials_from_token_configuration() -> None:
    from kubernetes import client

    from lmops_operator.k8s.login import connection_info

    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:6443"
    configuration.api_key = {"authorization": "Bearer abc.def"}
    configuration.ssl_ca_cert = "/tmp/ca.crt"
    info = connection_info(configuration)
    assert info.server == "https://127.0.0.1:6443" and info.token == "abc.def"
    assert info.ca_path == "/tmp/ca.crt" and info.insecure is False
