"""lmops' own Ray token: made once in the state directory, readable by the user only, and what every process
of a local Ray is pointed at (a fresh home has no ``~/.ray/auth_token``, and none is needed)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from lmops_runtime import local_env


@pytest.fixture(autouse=True)
def _ray_auth_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in local_env.AUTH_VARIABLES:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_the_token_is_made_once_and_private(tmp_path: Path) -> None:
    path = local_env.ensure_token(tmp_path / "state")
    token = path.read_text()
    assert len(token) == 64 and set(token) <= set("0123456789abcdef")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert local_env.ensure_token(tmp_path / "state") == path and path.read_text() == token


@pytest.fixture
def no_ray_attached(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as a fresh ``lmops`` command sees it: no Ray imported or attached. (In a full test run the
    session's Ray is attached by now, and ``use_local_token`` rightly leaves an attached process alone.)"""
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray._raylet", None)


@pytest.mark.usefixtures("no_ray_attached")
def test_use_local_token_points_ray_at_the_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RAY_AUTH_TOKEN", "someone-elses")  # Ray would prefer it over the file
    path = local_env.use_local_token()
    assert path == tmp_path / "state" / local_env.TOKEN_FILE
    assert os.environ["RAY_AUTH_MODE"] == "token"
    assert os.environ["RAY_AUTH_TOKEN_PATH"] == str(path)
    assert "RAY_AUTH_TOKEN" not in os.environ


def test_the_default_state_directory_is_in_the_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LMOPS_STATE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert local_env.state_dir() == tmp_path / ".cache" / "lmops"


def test_a_process_attached_to_a_ray_keeps_its_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Changing the token under a live driver would lock it out of its own cluster."""

    class AttachedRay:
        @staticmethod
        def is_initialized() -> bool:
            return True

    monkeypatch.setitem(sys.modules, "ray", AttachedRay)
    monkeypatch.setenv("LMOPS_STATE_DIR", str(tmp_path / "state"))
    local_env.use_local_token()
    assert "RAY_AUTH_MODE" not in os.environ and "RAY_AUTH_TOKEN_PATH" not in os.environ
