"""The kind path (hack/kind-up.sh): a real cluster with KubeRay and lmops, the tiny model called end to end.

Runs only where a Docker engine and kind work; everywhere else it is skipped with the reason printed.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from testkit.controlplane import REPO_ROOT

pytestmark = [pytest.mark.kind, pytest.mark.slow]


def _why_not() -> str | None:
    """The reason kind cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60, check=False)
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["no output"])[-1]
        return f"`docker info` failed (no Docker engine running): {last}"
    if shutil.which("kind") is None:
        return "kind is not installed"
    return None


def test_kind_up_serves_the_tiny_model() -> None:
    reason = _why_not()
    if reason:
        pytest.skip(f"kind e2e skipped: {reason}")
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "kind-up.sh")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert '"choices"' in result.stdout
    assert "answered" in result.stdout
