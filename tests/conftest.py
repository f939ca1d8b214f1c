"""Session fixtures shared by every tier. Tier-specific fixtures live in tests/<tier>/conftest.py."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.controlplane import (
    DEFAULT_BIN_DIR,
    KUBERAY_CRDS,
    REPO_ROOT,
    BinariesMissing,
    ControlPlane,
)
from tests.support.chart import install_operator_rbac

# One definition of the runtime fixtures (ray_local, tiny_*_model_dir) for every tier that uses them.
pytest_plugins = ["tests.support.runtime_fixtures"]


def project_crd_paths() -> list[Path]:
    """crds/ plus what only the chart ships (kopf's peering CRDs), so kopf can run with peering in tests."""
    own = sorted((REPO_ROOT / "crds").glob("*.yaml"))
    names = {p.name for p in own}
    chart_only = [p for p in sorted((REPO_ROOT / "charts/lmops/crds").glob("*.yaml")) if p.name not in names]
    return own + chart_only


@pytest.fixture(scope="session")
def controlplane() -> Iterator[ControlPlane]:
    """A real etcd + kube-apiserver + kube-controller-manager with lmops' and KubeRay's CRDs installed.

    Started on first use and stopped at the end of the session. Missing binaries fail the test (they are part
    of the suite's set-up, `make binaries`), they never skip it.
    """
    crd_paths = project_crd_paths() + [DEFAULT_BIN_DIR / "kuberay-crds" / name for name in KUBERAY_CRDS]
    started = time.monotonic()
    try:
        plane = ControlPlane(crd_paths=crd_paths)
    except BinariesMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    plane.start()
    sys.stderr.write(f"\ncontrol plane up in {time.monotonic() - started:.1f}s ({plane.timings})\n")
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def operator_kubeconfig(controlplane: ControlPlane) -> Path:
    """A kubeconfig with a real token of the chart's ServiceAccount (lmops-system/lmops), cluster-wide RBAC.

    The RBAC objects are the chart's own (`helm template` with default values, applied), so whatever runs
    with this kubeconfig, the in-process operator included, can do exactly what the installed operator can.
    """
    return install_operator_rbac(controlplane).kubeconfig
