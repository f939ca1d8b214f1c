"""The test control plane is real: kubectl works, KubeRay's CRDs serve, GC deletes dependents, RBAC denies."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from testkit.controlplane import (
    DEFAULT_BIN_DIR,
    KUBERAY_CRDS,
    BinariesMissing,
    ControlPlane,
    serviceaccount_user,
)


def _eventually(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} not observed within {timeout_s}s")


def _namespace(plane: ControlPlane, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    plane.kubectl("create", "namespace", name)
    return name


def _ray_service(name: str, owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": name, "ownerReferences": [owner]},
        "spec": {
            "rayClusterConfig": {
                "headGroupSpec": {
                    "rayStartParams": {},
                    "template": {
                        "spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.60.0"}]}
                    },
                }
            }
        },
    }


def test_kubectl_lists_namespaces(controlplane: ControlPlane) -> None:
    out = controlplane.kubectl("get", "namespaces", "-o", "name").stdout.split()
    assert {"namespace/default", "namespace/kube-system"} <= set(out)


def test_api_resources_include_kuberay(controlplane: ControlPlane) -> None:
    out = controlplane.kubectl("api-resources", "--api-group=ray.io", "-o", "name").stdout.split()
    assert {"rayservices.ray.io", "rayclusters.ray.io"} <= set(out)


def test_kuberay_crds_established(controlplane: ControlPlane) -> None:
    expected = set()
    for path in (DEFAULT_BIN_DIR / "kuberay-crds" / name for name in KUBERAY_CRDS):
        expected |= {d["metadata"]["name"] for d in yaml.safe_load_all(path.read_text()) if d}
    assert "rayservices.ray.io" in expected
    # Raw JSON: the client's model deserialisation of megabyte CRDs costs a minute on a busy machine.
    established = set()
    with controlplane.api_client() as api:
        crds = client.ApiextensionsV1Api(api)
        for name in expected:
            raw = json.loads(crds.read_custom_resource_definition_status(name, _preload_content=False).data)
            conditions = raw["status"].get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                established.add(name)
    assert expected <= established


def test_garbage_collector_deletes_dependents(controlplane: ControlPlane) -> None:
    """Owner-reference GC by the real kube-controller-manager, for a core and a KubeRay dependent."""
    ns = _namespace(controlplane, "gc")
    with controlplane.api_client() as api:
        core = client.CoreV1Api(api)
        custom = client.CustomObjectsApi(api)
        owner = core.create_namespaced_config_map(ns, {"metadata": {"name": "owner"}, "data": {"a": "1"}})
        ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
        core.create_namespaced_config_map(ns, {"metadata": {"name": "dependent", "ownerReferences": [ref]}})
        custom.create_namespaced_custom_object("ray.io", "v1", ns, "rayservices", _ray_service("child", ref))
        core.create_namespaced_config_map(ns, {"metadata": {"name": "bystander"}})

        core.delete_namespaced_config_map("owner", ns, propagation_policy="Background")

        def gone(read: Callable[[], object]) -> Callable[[], bool]:
            def check() -> bool:
                try:
                    read()
                except ApiException as exc:
                    return exc.status == 404
                return False

            return check

        _eventually(gone(lambda: core.read_namespaced_config_map("dependent", ns)), 60, "ConfigMap GC")
        _eventually(
            gone(lambda: custom.get_namespaced_custom_object("ray.io", "v1", ns, "rayservices", "child")),
            60,
            "RayService GC",
        )
        assert core.read_namespaced_config_map("bystander", ns).metadata.name == "bystander"


def test_namespace_deletion_finishes(controlplane: ControlPlane) -> None:
    """The namespace controller empties and removes a deleted namespace."""
    ns = _namespace(controlplane, "del")
    controlplane.kubectl("create", "configmap", "x", "-n", ns, "--from-literal=a=b")
    controlplane.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=60s")
    assert controlplane.kubectl("get", "namespace", ns, check=False).returncode != 0


def test_rbac_denies_serviceaccount_without_bindings(controlplane: ControlPlane) -> None:
    ns = _namespace(controlplane, "rbac")
    user = serviceaccount_user(ns, "nobody")
    with controlplane.api_client(impersonate=user) as api:
        review = client.AuthenticationV1Api(api).create_self_subject_review({})
        assert review.status.user_info.username == user
        assert "system:serviceaccounts" in review.status.user_info.groups
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(api).list_namespaced_secret(ns)
        assert denied.value.status == 403
        with pytest.raises(ApiException) as denied_cr:
            client.CustomObjectsApi(api).list_namespaced_custom_object("ray.io", "v1", ns, "rayservices")
        assert denied_cr.value.status == 403


def test_rbac_binding_allows_what_it_grants(controlplane: ControlPlane) -> None:
    """A RoleBinding lifts the denial only for the granted verb: the denial above is RBAC, not a failure."""
    ns = _namespace(controlplane, "rbac")
    controlplane.kubectl("create", "role", "cm-reader", "-n", ns, "--verb=list", "--resource=configmaps")
    controlplane.kubectl(
        "create", "rolebinding", "cm-reader", "-n", ns, "--role=cm-reader", f"--serviceaccount={ns}:reader"
    )
    with controlplane.api_client(impersonate=serviceaccount_user(ns, "reader")) as api:
        core = client.CoreV1Api(api)
        _eventually(lambda: _allowed(lambda: core.list_namespaced_config_map(ns)), 10, "RoleBinding works")
        with pytest.raises(ApiException) as denied:
            core.create_namespaced_config_map(ns, {"metadata": {"name": "nope"}})
        assert denied.value.status == 403


def _allowed(call: Callable[[], object]) -> bool:
    try:
        call()
    except ApiException as exc:
        if exc.status == 403:
            return False
        raise
    return True


def test_impersonated_groups_reach_the_server(controlplane: ControlPlane) -> None:
    groups = ["team-a", "team-b"]
    with controlplane.api_client(impersonate="alice", groups=groups) as api:
        info = client.AuthenticationV1Api(api).create_self_subject_review({}).status.user_info
    assert info.username == "alice"
    assert set(groups) <= set(info.groups)


def test_kubeconfig_impersonation_for_kubectl(controlplane: ControlPlane, tmp_path: Any) -> None:
    user = serviceaccount_user("default", "someone")
    kubeconfig = controlplane.write_kubeconfig(tmp_path / "as.kubeconfig", impersonate=user)
    jsonpath = "jsonpath={.status.userInfo.username}"
    whoami = controlplane.kubectl("auth", "whoami", "-o", jsonpath, kubeconfig=kubeconfig)
    assert whoami.stdout == user
    denied = controlplane.kubectl("get", "secrets", "-n", "default", kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()


def test_serviceaccount_token_kubeconfig_for_python_client(controlplane: ControlPlane, tmp_path: Any) -> None:
    """The token kubeconfig is what kopf and the kubernetes package load: they authenticate as the SA."""
    ns = _namespace(controlplane, "sa")
    controlplane.kubectl("create", "serviceaccount", "op", "-n", ns)
    kubeconfig = controlplane.serviceaccount_kubeconfig(ns, "op", tmp_path / "sa.kubeconfig")
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        info = client.AuthenticationV1Api(api).create_self_subject_review({}).status.user_info
        assert info.username == serviceaccount_user(ns, "op")
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(api).list_namespaced_config_map(ns)
        assert denied.value.status == 403


def test_missing_binaries_say_how_to_build_them(tmp_path: Path) -> None:
    with pytest.raises(BinariesMissing, match="make binaries"):
        ControlPlane(tmp_path)


@pytest.mark.slow
def test_stop_leaves_no_process_or_directory() -> None:
    """A second, CRD-less control plane: up, answering kubectl, then stopped without leftovers."""
    plane = ControlPlane()
    with plane:
        pids = plane.pids()
        assert len(pids) == 3
        assert "namespace/default" in plane.kubectl("get", "namespaces", "-o", "name").stdout
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not plane.workdir.exists()


def test_custom_resource_smoke_watch_status_conflict_and_schema(controlplane: ControlPlane) -> None:
    """The API server's own answers for a namespaced custom resource: create, watch, status subresource,
    409 for a stale resourceVersion, 422 for a schema violation, delete."""
    namespace = _namespace(controlplane, "smoke")
    body = {
        "apiVersion": "lmops.io/v1alpha1",
        "kind": "LanguageModel",
        "metadata": {"name": "smoke"},
        "spec": {"model": {"source": "builtin://tiny"}},
    }
    with controlplane.api_client() as api:
        objects = client.CustomObjectsApi(api)
        group = ("lmops.io", "v1alpha1", namespace, "languagemodels")
        created = objects.create_namespaced_custom_object(*group, body)
        stale = created["metadata"]["resourceVersion"]

        patched = objects.patch_namespaced_custom_object_status(
            *group, "smoke", {"status": {"phase": "Pending", "observedGeneration": 1}}
        )
        assert patched["status"]["phase"] == "Pending"
        assert patched["metadata"]["resourceVersion"] != stale

        outdated = {**created, "spec": {"model": {"source": "builtin://tiny", "task": "embed"}}}
        with pytest.raises(ApiException) as conflict:
            objects.replace_namespaced_custom_object(*group, "smoke", outdated)
        assert conflict.value.status == 409, conflict.value.body

        invalid = {**body, "metadata": {"name": "bad"}}
        invalid["spec"] = {"model": {"source": "builtin://tiny"}, "autoscaling": {"minReplicas": -1}}
        with pytest.raises(ApiException) as rejected:
            objects.create_namespaced_custom_object(*group, invalid)
        assert rejected.value.status == 422, rejected.value.body
        assert "minReplicas" in rejected.value.body

        objects.delete_namespaced_custom_object(*group, "smoke")
        seen = [
            (event["type"], event["object"]["metadata"]["name"])
            for event in watch.Watch().stream(
                objects.list_namespaced_custom_object,
                *group,
                resource_version=stale,
                timeout_seconds=10,
            )
        ]
    assert ("MODIFIED", "smoke") in seen
    assert ("DELETED", "smoke") in seen
