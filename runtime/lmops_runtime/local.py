"""Local mode: a Ray on this machine and the same serve config document the operator gives KubeRay.

``deploy`` takes the document KubeRay PUTs to the dashboard (``/api/serve/applications/``) and follows the
dashboard's own handler: validate with ``ServeDeploySchema``, start Serve with the document's HTTP options,
then ``deploy_apps`` on the controller. Calling the controller directly skips the dashboard's HTTP layer
(and Ray 2.60's token check there) while keeping the declarative semantics: applications missing from the
document are deleted, unchanged ones are left alone, a user_config change is a reconfigure.

For ``lmops up`` the head is a separate ``ray start --head`` process group with its own temp dir, so the CLI
can exit while serving; ``shutdown`` stops exactly the processes of that temp dir, never other Rays.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.serve.schema import ServeDeploySchema

from lmops_runtime import config as contract
from lmops_runtime.contract import HTTP_PORT
from lmops_runtime.local_env import use_local_token
from lmops_runtime.router import stats_actor

STATE_FILE = "local-ray.json"
_RUNNING = "RUNNING"
_DEPLOY_FAILED = "DEPLOY_FAILED"
_UNHEALTHY = "UNHEALTHY"


class LocalModeError(RuntimeError):
    """Local Ray could not be started, or an application failed to deploy (the message says which and why)."""


@dataclass(frozen=True)
class LocalRay:
    """Where the local Ray runs; ``temp_dir`` and ``owned`` say whether shutdown should stop it."""

    address: str
    temp_dir: str | None = None
    owned: bool = False
    http_port: int | None = None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _read_state() -> LocalRay | None:
    path = contract.state_dir() / STATE_FILE
    try:
        return LocalRay(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_state(local: LocalRay) -> None:
    path = contract.state_dir() / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(local)))


def _session_pids(temp_dir: str) -> list[int]:
    """PIDs of the Ray processes of one temp dir.

    Every Ray daemon and worker names the dir in a flag (``--temp-dir=<dir>``) or a session path
    (``<dir>/session_...``); matching only those forms never catches a shell that merely mentions the dir.
    """
    marks = (f"={temp_dir}".encode(), f"{temp_dir}/".encode())
    own = {os.getpid(), os.getppid()}
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in own:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if any(mark in cmdline for mark in marks):
            pids.append(int(entry.name))
    return pids


def _alive(local: LocalRay) -> bool:
    return bool(local.temp_dir) and bool(_session_pids(local.temp_dir or ""))


def _connect(address: str, attempts: int = 3) -> None:
    """Attach this driver to a running head; retried because a just-started GCS may still be warming up.

    The head was started with lmops' token (``local_env``); ``ray.init`` with an explicit address looks for
    no token by itself, so the driver is pointed at the same one first.
    """
    use_local_token()
    for attempt in range(attempts):
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            return
        except ConnectionError:
            if attempt == attempts - 1:
                raise
            time.sleep(2.0)


def start_local_ray(num_cpus: int | None = None, *, persistent: bool = True) -> LocalRay:
    """Attach to a running Ray, or start one.

    - Inside an already initialized Ray (tests): attach, own nothing.
    - ``persistent`` (``lmops up``): reuse the head recorded in the state file if it still runs, else start
      ``ray start --head`` in its own session and temp dir so it outlives this process.
    - Otherwise: an in-process ``ray.init`` that ends with this process.
    """
    if ray.is_initialized():
        return LocalRay(address=ray.get_runtime_context().gcs_address)
    use_local_token()  # the head, its workers and this driver share lmops' token (see local_env)
    if not persistent:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        return LocalRay(address=ray.get_runtime_context().gcs_address, owned=True)
    existing = _read_state()
    if existing is not None and _alive(existing):
        _connect(existing.address)
        return existing
    temp_dir = tempfile.mkdtemp(prefix="lmops-ray-", dir="/tmp")
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        # Local mode serves this machine only: bind Ray to loopback, not to the first network interface.
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--temp-dir={temp_dir}",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    if num_cpus is not None:
        command.append(f"--num-cpus={num_cpus}")
    result = subprocess.run(command, capture_output=True, text=True, start_new_session=True, check=False)
    local = LocalRay(address=f"127.0.0.1:{port}", temp_dir=temp_dir, owned=True)
    if result.returncode != 0:
        _stop_processes(temp_dir)
        raise LocalModeError(f"ray start failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    _write_state(local)
    _connect(local.address)
    return local


def recorded() -> LocalRay | None:
    """The head ``lmops up`` left running, without attaching to it; None if there is none."""
    existing = _read_state()
    return existing if existing is not None and _alive(existing) else None


def connect_existing() -> LocalRay | None:
    """Connect to the head ``lmops up`` left running (for ``status``/``down``); None if there is none."""
    existing = recorded()
    if existing is None:
        return None
    if not ray.is_initialized():
        _connect(existing.address)
    return existing


def validate(document: dict[str, Any]) -> ServeDeploySchema:
    """Parse a serve config document exactly as the dashboard (and so KubeRay) would."""
    schema: ServeDeploySchema = ServeDeploySchema.model_validate(document)
    return schema


def deploy(document: dict[str, Any], http_port: int = HTTP_PORT, host: str = "127.0.0.1") -> int:
    """Deploy a serve config document; returns the HTTP port Serve listens on.

    ``http_port``/``host`` fill the document's ``http_options`` when it names none. Serve keeps the HTTP
    options it was first started with, so the returned port is the one actually in use.
    """
    from ray.serve._private.api import serve_start
    from ray.serve.context import _get_global_client

    document = dict(document)
    running = _get_global_client(raise_if_no_controller_running=False)
    if running is not None and not document.get("http_options"):
        # Serve keeps the HTTP options it started with; restating them avoids a spurious mismatch warning.
        document["http_options"] = {"host": running.http_config.host, "port": running.http_config.port}
    http_options = {"host": host, "port": http_port, **(document.get("http_options") or {})}
    document["http_options"] = http_options
    schema = validate(document)
    client = running or serve_start(
        http_options=schema.http_options.model_dump(),
        grpc_options=schema.grpc_options.model_dump(),
        proxy_location=schema.proxy_location,
        global_logging_config=schema.logging_config,
    )
    try:
        if schema.logging_config:
            client.update_global_logging_config(schema.logging_config)
        client.deploy_apps(schema)
    except ray.exceptions.RayTaskError as exc:
        raise LocalModeError(f"Serve rejected the config: {exc}") from None
    port: int = client.http_config.port
    state = _read_state()
    if state is not None and _alive(state) and _connected_to(state):
        _write_state(LocalRay(state.address, state.temp_dir, state.owned, port))
    return port


def _connected_to(state: LocalRay) -> bool:
    """Whether this driver is attached to the recorded head (the GCS port identifies it on this machine)."""
    current: str = ray.get_runtime_context().gcs_address
    return current.rsplit(":", 1)[-1] == state.address.rsplit(":", 1)[-1]


def status() -> dict[str, Any]:
    """Application and deployment statuses, with replica counts, as plain JSON-able data."""
    apps: dict[str, Any] = {}
    for name, app in serve.status().applications.items():
        apps[name] = {
            "status": str(app.status.value if hasattr(app.status, "value") else app.status),
            "message": app.message,
            "deployments": {
                dep_name: {
                    "status": str(dep.status.value if hasattr(dep.status, "value") else dep.status),
                    "message": dep.message,
                    "replicas": {str(getattr(k, "value", k)): v for k, v in dep.replica_states.items()},
                }
                for dep_name, dep in app.deployments.items()
            },
        }
    return apps


def wait_ready(
    timeout_s: float = 300.0, app_names: list[str] | None = None, *, unhealthy_grace_s: float = 60.0
) -> dict[str, Any]:
    """Block until the named (default: all) applications are RUNNING; raise with Serve's message if not.

    DEPLOY_FAILED ends the wait at once. UNHEALTHY can be a replica that Serve is restarting, so it ends the
    wait only when it lasts ``unhealthy_grace_s``.
    """
    deadline = time.monotonic() + timeout_s
    unhealthy_since: dict[str, float] = {}
    current: dict[str, Any] = {}
    while time.monotonic() < deadline:
        current = status()
        now = time.monotonic()
        names = app_names if app_names is not None else list(current)
        failed = {}
        for name in names:
            state = current.get(name, {}).get("status")
            if state == _UNHEALTHY:
                unhealthy_since.setdefault(name, now)
            else:
                unhealthy_since.pop(name, None)
            if state == _DEPLOY_FAILED or now - unhealthy_since.get(name, now) >= unhealthy_grace_s:
                failed[name] = f"{state}: {current[name]['message']}"
        if failed:
            raise LocalModeError("; ".join(f"{n}: {m}" for n, m in failed.items()))
        if names and all(current.get(n, {}).get("status") == _RUNNING for n in names):
            return current
        time.sleep(0.5)
    raise LocalModeError(f"applications not ready after {timeout_s:.0f} s: {json.dumps(current)[:2000]}")


def delete_apps(names: list[str]) -> None:
    """Delete applications (and the Router's stats actor with its application) and wait until gone."""
    from ray.serve._private.api import serve_start

    serve_start().delete_apps(names, blocking=True)
    for name in names:
        stats_actor.kill(name)


def shutdown(local: LocalRay | None = None) -> None:
    """Stop Serve and the stats actors; stop the head too when this module started it."""
    with contextlib.suppress(Exception):
        if ray.is_initialized():
            names = list(serve.status().applications)
            serve.shutdown()  # type: ignore[no-untyped-call]
            for name in names:
                stats_actor.kill(name)
    if local is None or not local.owned:
        return
    ray.shutdown()
    if local.temp_dir:
        _stop_processes(local.temp_dir)
        shutil.rmtree(local.temp_dir, ignore_errors=True)
        state = _read_state()
        if state is not None and state.temp_dir == local.temp_dir:
            (contract.state_dir() / STATE_FILE).unlink(missing_ok=True)


def _stop_processes(temp_dir: str, grace_s: float = 10.0) -> None:
    """SIGTERM the processes of one Ray temp dir, then SIGKILL what is left after ``grace_s``."""
    for pid in _session_pids(temp_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _session_pids(temp_dir):
        time.sleep(0.2)
    for pid in _session_pids(temp_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
