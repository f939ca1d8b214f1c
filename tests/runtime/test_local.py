"""Local mode: the serve config document, deploy failures, and a persistent head that outlives its CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from lmops_runtime import local
from lmops_runtime.config import RouterConfig
from tests.runtime import serve_configs as sc


def _router_only(model: str = "tiny") -> dict[str, object]:
    return sc.document(sc.router_app(RouterConfig(weights={"a": 100}, stable="a"), model_name=model))


def test_documents_validate_as_the_dashboard_would(tmp_path: Path) -> None:
    doc = sc.document(
        sc.router_app(RouterConfig(weights={"a": 90, "b": 10}, stable="a")),
        sc.server_app("a", tmp_path),
        sc.server_app("b", tmp_path, autoscaling={"min_replicas": 0, "max_replicas": 2}),
    )
    schema = local.validate(doc)
    assert [app.name for app in schema.applications] == ["lm", "rev-a", "rev-b"]
    assert schema.applications[1].route_prefix is None
    with pytest.raises(ValidationError):
        local.validate({"applications": [{"name": "lm"}]})  # no import_path
    broken = json.loads(json.dumps(doc))
    broken["applications"][1]["deployments"][0]["num_replicas"] = "many"
    with pytest.raises(ValidationError):
        local.validate(broken)


@pytest.mark.slow
def test_a_revision_that_cannot_load_fails_with_its_message(ray_local: None, tmp_path: Path) -> None:
    local.start_local_ray()
    doc = sc.document(sc.server_app("missing", tmp_path / "no-such-model"))
    local.deploy(doc, http_port=local.free_port())
    try:
        with pytest.raises(local.LocalModeError, match="rev-missing"):
            local.wait_ready(300, ["rev-missing"])
        assert local.status()["rev-missing"]["status"] in {"DEPLOY_FAILED", "UNHEALTHY"}
    finally:
        local.delete_apps(["rev-missing"])
    assert "rev-missing" not in local.status()


_UP = """
import json, sys
sys.path.insert(0, {root!r})
from lmops_runtime import local
from tests.runtime import serve_configs as sc
from lmops_runtime.config import RouterConfig
ray_local = local.start_local_ray(num_cpus=1, persistent=True)
doc = sc.document(sc.router_app(RouterConfig(weights={{"a": 100}}, stable="a")))
port = local.deploy(doc, http_port=local.free_port())
local.wait_ready(240, ["lm"])
print(json.dumps({{"port": port, "temp_dir": ray_local.temp_dir}}))
"""

_DOWN = """
from lmops_runtime import local
existing = local.connect_existing()
assert existing is not None and existing.http_port is not None
local.shutdown(existing)
print("stopped")
"""


@pytest.mark.slow
def test_persistent_head_outlives_the_cli_and_stops_cleanly(tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "LMOPS_STATE_DIR": str(tmp_path / "state")}
    up = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_UP.format(root=root))],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    if up.returncode != 0:
        for started in (tmp_path / "state").glob(local.STATE_FILE):
            local._stop_processes(json.loads(started.read_text())["temp_dir"])
    assert up.returncode == 0, up.stderr[-3000:]
    info = json.loads(up.stdout.strip().splitlines()[-1])
    temp_dir = info["temp_dir"]
    try:
        # The process that started Ray has exited; the head and Serve keep answering.
        health = httpx.get(f"http://127.0.0.1:{info['port']}/healthz", timeout=30)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert (tmp_path / "state" / local.STATE_FILE).exists()
    finally:
        down = subprocess.run(
            [sys.executable, "-c", _DOWN], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if down.returncode != 0:
            local._stop_processes(temp_dir)  # never leave a Ray behind, even when the test fails
    assert down.returncode == 0 and "stopped" in down.stdout, down.stderr[-3000:]
    assert local._session_pids(temp_dir) == []
    assert not (tmp_path / "state" / local.STATE_FILE).exists()
