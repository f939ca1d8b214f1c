"""``lmops rollout`` on what ``lmops up`` serves, as a user runs them: separate processes of the real CLI on a
real local Ray. A promote is handed to the ``lmops up`` that walks the canary, history lists the revisions,
undo rolls the previous one out (a promote handed to it in turn), and an abort after ``lmops up`` was
interrupted drives the loop itself; the stable revision answers throughout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from lmops_runtime import local as runtime_local
from testkit.manifests import canary_manifest

pytestmark = pytest.mark.slow

STEP_TIMEOUT_S = 300


class Cli:
    """``lmops`` in its own process, with its own state directory."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.env = {**os.environ, "LMOPS_STATE_DIR": str(state)}

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "lmops_operator.cli", *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT_S,
            check=False,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def wait_for_canary(self, weight: int) -> str:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        out = ""
        while time.monotonic() < deadline:
            out = self.run("rollout", "status", "tiny").stdout
            if f"at {weight}%" in out:
                return out
            time.sleep(1.0)
        raise AssertionError(f"no canary at {weight}% after {STEP_TIMEOUT_S} s:\n{out}")

    def history(self) -> list[list[str]]:
        result = self.run("rollout", "history", "tiny")
        assert result.returncode == 0, result.stderr
        return [line.split() for line in result.stdout.splitlines()[1:]]


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = process.communicate(timeout=STEP_TIMEOUT_S)
    return process.returncode, out


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    """The CLI; whatever it leaves running is stopped afterwards, by ``lmops down`` or else by its PIDs."""
    state = tmp_path / "state"
    tool = Cli(state)
    yield tool
    recorded = state / runtime_local.STATE_FILE
    temp_dir = json.loads(recorded.read_text())["temp_dir"] if recorded.exists() else None
    down = tool.run("down")
    if temp_dir is not None:
        runtime_local._stop_processes(temp_dir)  # never leave a Ray behind, even when `down` failed
    assert down.returncode == 0, down.stderr


def test_rollout_controls_steer_what_lmops_up_serves(
    cli: Cli, tiny_generate_model_dir: Path, tmp_path: Path
) -> None:
    def manifest(max_new_tokens: int) -> str:
        doc = canary_manifest(
            tiny_generate_model_dir, name="tiny", max_new_tokens=max_new_tokens, pause_s=3600, interval_s=5
        )
        doc["spec"]["rollout"]["steps"] = [{"weight": 50, "pauseSeconds": 3600}]
        path = tmp_path / f"tiny-{max_new_tokens}.yaml"
        path.write_text(yaml.safe_dump(doc))
        return str(path)

    v1, v2 = manifest(8), manifest(12)
    port = runtime_local.free_port()
    first = cli.run("up", v1, "--port", str(port))
    assert first.returncode == 0, first.stdout + first.stderr

    # 1. `lmops up` walks a canary; a promote from another process is handed to it.
    up = cli.start("up", v2)
    cli.wait_for_canary(50)
    promote = cli.run("rollout", "promote", "tiny")
    assert promote.returncode == 0 and "the `lmops up` rolling it out applies it" in promote.stdout
    code, out = finish(up)
    assert code == 0 and "is Ready" in out, out
    (one, rev1, *_), (two, rev2, role, *_) = cli.history()
    assert (one, two, role) == ("1", "2", "stable")

    # 2. undo rolls revision 1 out again, per the file's canary steps; a promote is handed to it.
    undo = cli.start("rollout", "undo", "tiny")
    cli.wait_for_canary(50)
    assert cli.run("rollout", "promote", "tiny").returncode == 0
    code, out = finish(undo)
    assert code == 0 and f"rolling back to revision 1 ({rev1})" in out and f"stable:  {rev1}" in out, out
    assert [row[:2] for row in cli.history()] == [["2", rev2], ["3", rev1]]

    # 3. With `lmops up` interrupted mid-canary, abort drives the loop itself; status -w ends non-zero.
    up = cli.start("up", v2)
    cli.wait_for_canary(50)
    up.send_signal(signal.SIGINT)
    code, out = finish(up)
    assert code == 130 and "keeps serving" in out, out
    abort = cli.run("rollout", "abort", "tiny")
    assert abort.returncode == 0 and "Aborted" in abort.stdout, abort.stdout + abort.stderr
    watch = cli.run("rollout", "status", "tiny", "-w")
    assert watch.returncode == 1 and f"stable:  {rev1}" in watch.stdout, watch.stdout
    answer = httpx.post(
        f"http://127.0.0.1:{port}/v1/completions",
        json={"model": "tiny", "prompt": "Hello", "max_tokens": 4},
        timeout=60,
    )
    assert answer.status_code == 200 and answer.json()["choices"][0]["text"] is not None
