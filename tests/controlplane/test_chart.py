"""The chart on the real API server: `helm install` works, and its RBAC allows the job and denies the rest."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from testkit.controlplane import ControlPlane
from tests.support.chart import CHART_DIR, OperatorIdentity, install_operator_rbac, values_file


def _status(call: Callable[[], object]) -> int:
    """HTTP status of ``call``: 200 when it succeeds, the API error's status otherwise."""
    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


def _ray_service(name: str) -> dict[str, Any]:
    container = {"name": "ray-head", "image": "rayproject/ray:2.60.0"}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": name},
        "spec": {
            "rayClusterConfig": {
                "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [container]}}}
            }
        },
    }


def test_helm_install_and_uninstall(controlplane: ControlPlane, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:6]
    release, namespace = f"lm{suffix}", f"lmops-{suffix}"
    watched = f"team-{suffix}"
    controlplane.kubectl("create", "namespace", watched)
    values = values_file({"operator": {"watchNamespaces": [watched]}}, tmp_path)
    out = controlplane.helm(
        "install",
        release,
        str(CHART_DIR),
        "--namespace",
        namespace,
        "--create-namespace",
        "--values",
        str(values),
    ).stdout
    assert "STATUS: deployed" in out
    assert f"lmops 0.1.0 is installed as release {release}" in out  # NOTES.txt
    listed = json.loads(controlplane.helm("list", "--namespace", namespace, "--output", "json").stdout)
    assert [(r["name"], r["status"]) for r in listed] == [(release, "deployed")]

    deployment = json.loads(controlplane.kubectl("get", "deployment", "-n", namespace, "-o", "json").stdout)
    (item,) = deployment["items"]
    assert item["spec"]["replicas"] == 2
    assert controlplane.kubectl("get", "role", "-n", watched, "-o", "name").stdout.strip()
    assert controlplane.kubectl("get", "kopfpeering", "lmops", "-n", watched, "-o", "name").stdout.strip()

    controlplane.helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "60s")
    left = controlplane.kubectl("get", "deployment,serviceaccount", "-n", namespace, "-o", "name").stdout
    assert f"deployment.apps/{release}-lmops" not in left
    assert controlplane.kubectl("get", "role", "-n", watched, "-o", "name").stdout.strip() == ""


@pytest.fixture(scope="module")
def namespaced_operator(controlplane: ControlPlane) -> tuple[OperatorIdentity, str, str]:
    """The chart's identity with one watched namespace, plus a namespace it does not watch."""
    suffix = uuid.uuid4().hex[:6]
    watched, unwatched = f"watched-{suffix}", f"other-{suffix}"
    controlplane.kubectl("create", "namespace", unwatched)
    identity = install_operator_rbac(
        controlplane,
        {"operator": {"watchNamespaces": [watched]}},
        release=f"rbac{suffix}",
        namespace=f"lmops-{suffix}",
    )
    for ns in (watched, unwatched):
        controlplane.kubectl("create", "secret", "generic", "api-keys", "-n", ns, "--from-literal=key=s3cr3t")
    return identity, watched, unwatched


def test_namespaced_rbac_allows_the_job_and_denies_the_rest(
    controlplane: ControlPlane, namespaced_operator: tuple[OperatorIdentity, str, str]
) -> None:
    identity, watched, unwatched = namespaced_operator
    with controlplane.api_client(impersonate=identity.user) as api:
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        create = custom.create_namespaced_custom_object
        assert _status(lambda: create("ray.io", "v1", watched, "rayservices", _ray_service("ok"))) == 200
        assert _status(lambda: create("ray.io", "v1", unwatched, "rayservices", _ray_service("no"))) == 403
        assert _status(lambda: core.read_namespaced_secret("api-keys", unwatched)) == 403
        assert _status(lambda: core.read_namespaced_secret("api-keys", watched)) == 403  # no secretReads
        assert _status(lambda: core.list_namespaced_secret(watched)) == 403
        assert _status(lambda: core.delete_node("any-node")) == 403
        assert _status(lambda: core.list_node()) == 403
        assert _status(lambda: core.list_namespace()) == 403  # namespaced install: no cluster-wide reads
        lm = client.CustomObjectsApi(api).list_namespaced_custom_object
        assert _status(lambda: lm("lmops.io", "v1alpha1", watched, "languagemodels")) == 200
        assert _status(lambda: lm("lmops.io", "v1alpha1", unwatched, "languagemodels")) == 403
        rbac = client.RbacAuthorizationV1Api(api)
        assert _status(lambda: rbac.list_namespaced_role(watched)) == 403  # cannot escalate


def test_operator_kubeconfig_is_the_clusterwide_serviceaccount(
    controlplane: ControlPlane, operator_kubeconfig: Path
) -> None:
    """The shared fixture: a real token of lmops-system/lmops, held to the default (cluster-wide) RBAC."""
    ns = f"any-{uuid.uuid4().hex[:6]}"
    controlplane.kubectl("create", "namespace", ns)
    controlplane.kubectl("create", "secret", "generic", "api-keys", "-n", ns, "--from-literal=key=s3cr3t")
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(operator_kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        review = client.AuthenticationV1Api(api).create_self_subject_review({})
        assert review.status.user_info.username == "system:serviceaccount:lmops-system:lmops"
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        create = custom.create_namespaced_custom_object
        assert _status(lambda: create("ray.io", "v1", ns, "rayservices", _ray_service("cw"))) == 200
        assert _status(lambda: core.read_namespaced_secret("api-keys", ns)) == 403
        assert _status(lambda: core.delete_node("any-node")) == 403
        assert _status(lambda: core.list_namespace()) == 200
        peering = custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", "lmops")
        assert peering["metadata"]["name"] == "lmops"
