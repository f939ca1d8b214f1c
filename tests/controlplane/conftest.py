"""Fixtures for the operator's control-plane tests: an in-process operator against the real API server.

The operator authenticates as the Helm chart's ServiceAccount when the control-plane harness provides the
``operator_kubeconfig`` fixture (RBAC then tested too); otherwise as the admin, and says so once.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lmops_operator.commands.operator import OperatorRun
from lmops_operator.k8s.client import Kube, api_client_from_kubeconfig
from lmops_operator.metrics_source import FakeMetricsSource
from lmops_operator.settings import Settings
from testkit.controlplane import ControlPlane

READY_TIMEOUT_S = 60.0


def eventually(check: Callable[[], Any], timeout_s: float = 60.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached within {timeout_s}s (last: {last!r})")


class CountingApi:
    """Wraps an ApiClient's ``call_api`` to count requests per HTTP method (what a resync must not write)."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.methods: Counter[str] = Counter()
        inner = api.call_api

        def call_api(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            self.methods[method.upper()] += 1
            return inner(method, url, *args, **kwargs)

        api.call_api = call_api

    @property
    def writes(self) -> int:
        return sum(n for m, n in self.methods.items() if m not in ("GET", "HEAD", "OPTIONS"))


@dataclass
class RunningOperator:
    """An operator in a thread with its own event loop; ``stop`` ends it the way SIGTERM would."""

    run: OperatorRun
    thread: threading.Thread | None = None
    stop_flag: threading.Event = field(default_factory=threading.Event)
    ready_flag: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def start(self) -> RunningOperator:
        def target() -> None:
            try:
                asyncio.run(self.run.run(stop_flag=self.stop_flag, ready_flag=self.ready_flag))
            except BaseException as exc:  # reported by the test that started it
                self.error = exc

        self.thread = threading.Thread(target=target, name="lmops-operator", daemon=True)
        self.thread.start()
        if not self.ready_flag.wait(READY_TIMEOUT_S):
            raise AssertionError(f"operator not ready within {READY_TIMEOUT_S}s: {self.error!r}")
        return self

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def stop(self, timeout_s: float = 30.0) -> None:
        self.stop_flag.set()
        if self.thread is not None:
            self.thread.join(timeout_s)
            assert not self.thread.is_alive(), "operator did not stop"


@pytest.fixture(scope="session")
def operator_credentials(request: pytest.FixtureRequest, controlplane: ControlPlane) -> Path:
    """Kubeconfig the operator uses: the chart's ServiceAccount when the harness has it, else the admin."""
    try:
        path: Path = request.getfixturevalue("operator_kubeconfig")
        return path
    except pytest.FixtureLookupError:
        sys.stderr.write("\nlmops operator tests run as the ADMIN (no operator_kubeconfig fixture yet)\n")
        return controlplane.kubeconfig


@pytest.fixture
def namespace(controlplane: ControlPlane) -> str:
    name = f"lm-{uuid.uuid4().hex[:8]}"
    controlplane.kubectl("create", "namespace", name)
    return name


@pytest.fixture
def admin(controlplane: ControlPlane) -> Kube:
    """The test's own client (admin): what KubeRay and users do."""
    return Kube(controlplane.api_client())


@pytest.fixture
def start_operator(
    operator_credentials: Path,
) -> Iterator[Callable[..., RunningOperator]]:
    """Start an in-process operator watching the given namespaces; every one started is stopped at the end."""
    started: list[RunningOperator] = []

    def start(
        namespaces: tuple[str, ...],
        priority: int | None = None,
        kubeconfig: Path | None = None,
        api_client: Any = None,
        **settings: Any,
    ) -> RunningOperator:
        credentials = kubeconfig or operator_credentials
        run = OperatorRun(
            Settings(
                watch_namespaces=namespaces,
                default_runtime_image="ghcr.io/lmops/runtime:test",
                **settings,
            ),
            kubeconfig=str(credentials),
            metrics_source=FakeMetricsSource(),
            api_client=api_client or api_client_from_kubeconfig(str(credentials)),
        )
        if priority is not None:
            run.priority = priority
        operator = RunningOperator(run).start()
        started.append(operator)
        return operator

    yield start
    for operator in started:
        if operator.alive:
            operator.stop()
