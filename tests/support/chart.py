"""Render the Helm chart with the built helm, and give tests the chart's RBAC identity on the real API server.

``install_operator_rbac`` applies exactly what `helm install` would create for the operator's identity
(ServiceAccount, (Cluster)Roles, bindings, kopf peering objects) and writes a kubeconfig holding a real token
of that ServiceAccount, so an in-process operator is held to the chart's RBAC like the deployed one.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testkit.controlplane import (
    DEFAULT_BIN_DIR,
    REPO_ROOT,
    ControlPlane,
    find_binaries,
    serviceaccount_user,
)

CHART_DIR = REPO_ROOT / "charts" / "lmops"
IDENTITY_KINDS = frozenset(
    {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ClusterKopfPeering",
        "KopfPeering",
    }
)
DEFAULT_RELEASE = "lmops"
DEFAULT_NAMESPACE = "lmops-system"


class HelmError(RuntimeError):
    """helm exited non-zero; the message carries its stderr."""


def helm(*args: str, bin_dir: Path = DEFAULT_BIN_DIR, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the built helm with throwaway cache/config dirs (no cluster needed for lint and template)."""
    find_binaries(bin_dir)
    with tempfile.TemporaryDirectory(prefix="lmops-helm-") as home:
        env = {
            "HELM_CACHE_HOME": f"{home}/cache",
            "HELM_CONFIG_HOME": f"{home}/config",
            "HELM_DATA_HOME": f"{home}/data",
            "PATH": "/usr/bin:/bin",
        }
        result = subprocess.run(
            [str(bin_dir / "helm"), *args], capture_output=True, text=True, env=env, timeout=120, check=False
        )
    if check and result.returncode != 0:
        raise HelmError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def values_file(values: Mapping[str, Any], directory: Path) -> Path:
    path = directory / "values.json"
    path.write_text(json.dumps(values))
    return path


def render(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = DEFAULT_RELEASE,
    namespace: str = DEFAULT_NAMESPACE,
    chart: Path = CHART_DIR,
    extra_args: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """`helm template` the chart with ``values``; returns the rendered objects (CRDs excluded)."""
    with tempfile.TemporaryDirectory(prefix="lmops-values-") as tmp:
        args = ["template", release, str(chart), "--namespace", namespace, *extra_args]
        if values:
            args += ["--values", str(values_file(values, Path(tmp)))]
        out = helm(*args).stdout
    return [doc for doc in yaml.safe_load_all(out) if isinstance(doc, dict)]


@dataclass(frozen=True)
class OperatorIdentity:
    """Who the chart makes the operator: its ServiceAccount, and a kubeconfig authenticating as it."""

    kubeconfig: Path
    namespace: str
    service_account: str
    watch_namespaces: tuple[str, ...]

    @property
    def user(self) -> str:
        return serviceaccount_user(self.namespace, self.service_account)


def install_operator_rbac(
    plane: ControlPlane,
    values: Mapping[str, Any] | None = None,
    *,
    release: str = DEFAULT_RELEASE,
    namespace: str = DEFAULT_NAMESPACE,
    kubeconfig: Path | None = None,
) -> OperatorIdentity:
    """Apply the chart's identity objects for ``values`` and return a token kubeconfig for its ServiceAccount.

    Namespaces (the release's and the watched ones) are created when missing.
    """
    docs = [
        d for d in render(values, release=release, namespace=namespace) if d.get("kind") in IDENTITY_KINDS
    ]
    accounts = [d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"]
    if len(accounts) != 1:
        raise AssertionError(f"the chart rendered {len(accounts)} ServiceAccounts, expected 1")
    watched = tuple((values or {}).get("operator", {}).get("watchNamespaces", ()))
    for ns in (namespace, *watched):
        if plane.kubectl("get", "namespace", ns, check=False).returncode != 0:
            plane.kubectl("create", "namespace", ns)
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump_all(docs))
    path = plane.serviceaccount_kubeconfig(
        namespace, accounts[0], kubeconfig or plane.workdir / f"operator-{release}-{namespace}.kubeconfig"
    )
    return OperatorIdentity(path, namespace, accounts[0], watched)
