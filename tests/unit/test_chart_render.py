"""The Helm chart, rendered and linted by the pinned helm: least-privilege RBAC, hard pods, strict values."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmops_operator.k8s.peering import peering_crds
from testkit.controlplane import REPO_ROOT
from tests.support.chart import CHART_DIR, HelmError, helm, render, values_file

NAMESPACED = {"team-a", "team-b"}
NON_DEFAULT = {
    "replicaCount": 3,
    "image": {"repository": "registry.example/lmops", "tag": "1.2.3", "pullPolicy": "Always"},
    "operator": {
        "watchNamespaces": sorted(NAMESPACED),
        "allowedSources": ["hf://acme/", "s3://models/"],
        "allowTrustRemoteCode": True,
        "defaultRuntimeImage": "registry.example/runtime:1.2.3",
        "defaultVllmRuntimeImage": "registry.example/runtime:1.2.3-vllm",
        "defaultVllmCpuRuntimeImage": "registry.example/runtime:1.2.3-vllm-cpu",
        "peeringName": "acme",
        "logLevel": "debug",
        "prometheusUrl": "http://prometheus.monitoring:9090",
    },
    "rbac": {"secretReads": {"enabled": True, "resourceNames": ["api-keys"]}},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
    "networkPolicy": {"enabled": True, "metricsFrom": [{"namespaceSelector": {}}]},
}


def kinds(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = kinds(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def rules(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for d in docs if d["kind"] in ("Role", "ClusterRole") for r in d["rules"]]


def grants(docs: Iterable[dict[str, Any]], resource: str, group: str = "") -> set[str]:
    return {
        v for r in rules(docs) if resource in r["resources"] and group in r["apiGroups"] for v in r["verbs"]
    }


def env(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.fixture(scope="module")
def default_docs() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def custom_docs() -> list[dict[str, Any]]:
    return render(NON_DEFAULT)


def test_lint_default_and_custom_values(tmp_path: Path) -> None:
    helm("lint", "--strict", str(CHART_DIR))
    helm("lint", "--strict", str(CHART_DIR), "--values", str(values_file(NON_DEFAULT, tmp_path)))


@pytest.mark.parametrize("docs_fixture", ["default_docs", "custom_docs"])
def test_no_wildcards_anywhere(docs_fixture: str, request: pytest.FixtureRequest) -> None:
    for rule in rules(request.getfixturevalue(docs_fixture)):
        for key in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(key, []), rule


@pytest.mark.parametrize("docs_fixture", ["default_docs", "custom_docs"])
def test_pod_is_hardened(docs_fixture: str, request: pytest.FixtureRequest) -> None:
    pod = one(request.getfixturevalue(docs_fixture), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"] and container["resources"]["requests"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts


def test_default_is_clusterwide_two_replicas_with_peering(default_docs: list[dict[str, Any]]) -> None:
    deployment = one(default_docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["lmops", "operator", "run"]
    assert container["image"] == "ghcr.io/lmops/operator:0.1.0"
    variables = env(deployment)
    assert variables["LMOPS_WATCH_NAMESPACES"] == ""
    assert variables["LMOPS_PEERING_NAME"] == "lmops"
    assert variables["LMOPS_ALLOW_TRUST_REMOTE_CODE"] == "false"
    assert variables["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert not kinds(default_docs, "Role") and not kinds(default_docs, "RoleBinding")
    role = one(default_docs, "ClusterRole")
    assert one(default_docs, "ClusterRoleBinding")["roleRef"]["name"] == role["metadata"]["name"]
    assert one(default_docs, "ClusterKopfPeering")["metadata"]["name"] == "lmops"
    assert grants(default_docs, "rayservices", "ray.io") == {
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "delete",
    }
    assert grants(default_docs, "clusterkopfpeerings", "kopf.dev") == {"get", "list", "watch", "patch"}
    # worker bounds are patched into the live RayCluster (KubeRay does not push them, kuberay#4568)
    assert grants(default_docs, "rayclusters", "ray.io") == {"get", "list", "watch", "patch"}
    assert one(default_docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert not kinds(default_docs, "ServiceMonitor") and not kinds(default_docs, "NetworkPolicy")


def test_no_secret_access_unless_asked(
    default_docs: list[dict[str, Any]], custom_docs: list[dict[str, Any]]
) -> None:
    assert grants(default_docs, "secrets") == set()
    secret_rules = [r for r in rules(custom_docs) if "secrets" in r["resources"]]
    assert secret_rules and all(r["verbs"] == ["get"] for r in secret_rules)
    assert all(r["resourceNames"] == ["api-keys"] for r in secret_rules)


def test_watch_namespaces_gives_roles_only_there(custom_docs: list[dict[str, Any]]) -> None:
    roles = kinds(custom_docs, "Role")
    assert {r["metadata"]["namespace"] for r in roles} == NAMESPACED
    assert {b["metadata"]["namespace"] for b in kinds(custom_docs, "RoleBinding")} == NAMESPACED
    (cluster_role,) = kinds(custom_docs, "ClusterRole")
    # The only cluster-scoped grant left is CRD discovery: no namespaced resource in every namespace.
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    assert {p["metadata"]["namespace"] for p in kinds(custom_docs, "KopfPeering")} == NAMESPACED
    assert not kinds(custom_docs, "ClusterKopfPeering")


def test_settings_reach_the_operator_env(custom_docs: list[dict[str, Any]]) -> None:
    deployment = one(custom_docs, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/lmops:1.2.3"
    assert env(deployment) | {"POD_ID": None} == {
        "LMOPS_WATCH_NAMESPACES": "team-a,team-b",
        "LMOPS_ALLOWED_SOURCES": "hf://acme/,s3://models/",
        "LMOPS_ALLOW_TRUST_REMOTE_CODE": "true",
        "LMOPS_DEFAULT_RUNTIME_IMAGE": "registry.example/runtime:1.2.3",
        "LMOPS_DEFAULT_VLLM_RUNTIME_IMAGE": "registry.example/runtime:1.2.3-vllm",
        "LMOPS_DEFAULT_VLLM_CPU_RUNTIME_IMAGE": "registry.example/runtime:1.2.3-vllm-cpu",
        "LMOPS_PEERING_NAME": "acme",
        "LMOPS_LOG_LEVEL": "DEBUG",
        "LMOPS_PROMETHEUS_URL": "http://prometheus.monitoring:9090",
        "POD_ID": None,
    }


def test_optional_monitoring_and_network_policy(custom_docs: list[dict[str, Any]]) -> None:
    monitor = one(custom_docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    service = next(s for s in kinds(custom_docs, "Service") if s["metadata"]["name"].endswith("-metrics"))
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    policy = one(custom_docs, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
    assert {53, 443, 8000, 9090} <= egress_ports


def test_single_replica_may_run_standalone() -> None:
    docs = render({"replicaCount": 1, "operator": {"peeringName": ""}})
    assert env(one(docs, "Deployment"))["LMOPS_PEERING_NAME"] == ""
    assert not kinds(docs, "ClusterKopfPeering") and not kinds(docs, "PodDisruptionBudget")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 0}, "replicaCount"),
        ({"operator": {"peeringName": ""}}, "peeringName"),
        ({"operator": {"watchNamespaces": ["Not_A_Namespace"]}}, "watchNamespaces"),
        ({"operator": {"logLevel": "LOUD"}}, "logLevel"),
        ({"operator": {"allowTrustRemoteCode": "yes"}}, "allowTrustRemoteCode"),
        ({"operator": {"allowedSources": ["a,b"]}}, "allowedSources"),
        (
            {"securityContext": {"allowPrivilegeEscalation": True, "readOnlyRootFilesystem": True}},
            "allowPriv",
        ),
        (
            {"securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False}},
            "readOnly",
        ),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
        ({"replicas": 2}, "replicas"),
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmError) as failed:
        render(values)
    assert message in str(failed.value)


def test_every_value_is_documented() -> None:
    """Each value has a comment right above it, or right above a block that holds it."""
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()

    def indent(line: str) -> int:
        return len(line) - len(line.lstrip())

    def commented(i: int) -> bool:
        above = [lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()]
        return bool(above) and above[0].startswith("#")

    def parent(i: int) -> int | None:
        return next(
            (
                j
                for j in range(i - 1, -1, -1)
                if lines[j].strip()
                and indent(lines[j]) < indent(lines[i])
                and not lines[j].strip().startswith("#")
            ),
            None,
        )

    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or not stripped.partition(":")[2].strip():
            continue  # comments, list items and blocks; leaves are checked
        documented, block = commented(i), parent(i)
        while not documented and block is not None:
            documented, block = commented(block), parent(block)
        assert documented, f"values.yaml line {i + 1} ({stripped}) has no comment"


def test_schema_covers_every_value() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())

    def walk(node: dict[str, Any], sub: dict[str, Any], path: str) -> None:
        for key, value in node.items():
            assert key in sub.get("properties", {}), f"{path}{key} is not in values.schema.json"
            child = sub["properties"][key]
            if isinstance(value, dict) and child.get("additionalProperties") is False:
                walk(value, child, f"{path}{key}.")

    walk(values, schema, "")


def test_stack_chart_points_at_kuberay_and_this_chart() -> None:
    """charts/lmops-stack: KubeRay's public chart as an optional dependency next to this chart."""
    stack = REPO_ROOT / "charts" / "lmops-stack"
    chart = yaml.safe_load((stack / "Chart.yaml").read_text())
    deps = {d["name"]: d for d in chart["dependencies"]}
    assert deps["kuberay-operator"]["repository"] == "https://ray-project.github.io/kuberay-helm/"
    assert deps["kuberay-operator"]["version"] == "1.7.0"
    assert deps["kuberay-operator"]["condition"] == "kuberay-operator.enabled"
    assert deps["lmops"]["repository"] == "file://../lmops"
    own = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert deps["lmops"]["version"] == own["version"]
    # The stack's values for this chart must pass this chart's schema and render.
    stack_values = yaml.safe_load((stack / "values.yaml").read_text())
    assert stack_values["kuberay-operator"]["enabled"] is True
    assert render(stack_values["lmops"])


def test_kind_values_render() -> None:
    """hack/kind-up.sh installs the chart with hack/kind-values.yaml: it must lint and render."""
    kind_values = REPO_ROOT / "hack" / "kind-values.yaml"
    helm("lint", "--strict", str(CHART_DIR), "--values", str(kind_values))
    docs = render(yaml.safe_load(kind_values.read_text()))
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Never"


def test_chart_ships_the_peering_crds_the_operator_knows() -> None:
    """The chart's kopf peering CRDs name the same resources as lmops_operator.k8s.peering."""

    def key(crd: dict[str, Any]) -> tuple[str, str, str, str]:
        spec = crd["spec"]
        return (crd["metadata"]["name"], spec["group"], spec["scope"], spec["names"]["kind"])

    shipped = yaml.safe_load_all((CHART_DIR / "crds" / "kopf.dev_peerings.yaml").read_text())
    assert sorted(key(c) for c in shipped) == sorted(key(c) for c in peering_crds())
