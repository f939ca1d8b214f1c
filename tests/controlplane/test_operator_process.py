"""`lmops operator run` as the chart runs it: a process configured by LMOPS_* env, with probes and metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lmops_operator.k8s.client import Kube
from lmops_operator.k8s.resources import RAY_SERVICE
from testkit.controlplane import REPO_ROOT, ControlPlane, free_port
from tests.controlplane.conftest import eventually
from tests.controlplane.test_operator import _apply, _example

pytestmark = pytest.mark.slow


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except OSError:
        return 0, ""


def test_operator_process_serves_probes_metrics_and_reconciles(
    controlplane: ControlPlane, admin: Kube, namespace: str, operator_credentials: Path, tmp_path: Path
) -> None:
    liveness, metrics = free_port(), free_port()
    env = {
        **os.environ,
        "LMOPS_WATCH_NAMESPACES": namespace,
        "LMOPS_DEFAULT_RUNTIME_IMAGE": "registry.example/runtime:proc",
        "LMOPS_LOG_LEVEL": "INFO",
    }
    log_path = tmp_path / "operator.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "lmops_operator.cli", "operator", "run",
                f"--kubeconfig={operator_credentials}",
                f"--liveness-port={liveness}", f"--metrics-port={metrics}",
            ],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        eventually(lambda: _get(f"http://127.0.0.1:{liveness}/healthz")[0] == 200, 90, "liveness 200")
        _apply(controlplane, _example("tiny", namespace))
        ray_service: dict[str, Any] = eventually(
            lambda: admin.get(RAY_SERVICE.item(namespace, "tiny")), 90, "RayService from the process"
        )
        image = ray_service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert image["image"] == "registry.example/runtime:proc"

        def reconciles() -> float:
            status, text = _get(f"http://127.0.0.1:{metrics}/metrics")
            assert status == 200
            return next(
                float(line.split()[-1])
                for line in text.splitlines()
                if line.startswith("lmops_operator_reconcile_total")
            )

        eventually(lambda: reconciles() >= 1, 30, "a counted reconcile")
        text = _get(f"http://127.0.0.1:{metrics}/metrics")[1]
        assert "lmops_operator_reconcile_duration_seconds_bucket" in text
        assert "lmops_operator_reconcile_errors_total" in text
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    lines = [line for line in log_path.read_text().splitlines() if line.startswith("{")]
    entries = [json.loads(line) for line in lines]
    assert any(e["message"] == "starting lmops operator" and e["namespaces"] == namespace for e in entries)
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
