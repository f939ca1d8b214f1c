"""A closed-loop load generator and a replica sampler for the local-Ray proofs and benchmarks (autoscaling,
failover, rollback).

Clients never retry: every non-200 answer or transport error is a failed client request, which is what the
proofs count. Each outcome is stamped with the time it finished and the revision that served it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
from ray import serve

from lmops_runtime import config as contract
from lmops_runtime.contract import REVISION_HEADER


@dataclass
class Load:
    """``clients`` threads posting /v1/completions in a loop until ``stop``."""

    url: str
    clients: int = 4
    max_tokens: int = 8
    model: str = "tiny"
    stop_event: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    served: list[tuple[float, str]] = field(default_factory=list)  # (finished at, revision)
    failures: list[tuple[float, str]] = field(default_factory=list)  # (finished at, what, with its duration)
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def sent(self) -> int:
        with self.lock:
            return len(self.served) + len(self.failures)

    def by_revision(self, since: float = 0.0) -> Counter[str]:
        with self.lock:
            return Counter(rev for at, rev in self.served if at >= since)

    def _client(self) -> None:
        body = {"model": self.model, "prompt": "hello world", "max_tokens": self.max_tokens}
        with httpx.Client(timeout=120) as http:
            while not self.stop_event.is_set():
                started = time.monotonic()
                try:
                    response = http.post(f"{self.url}/v1/completions", json=body)
                    good = response.status_code == 200
                    what = (
                        response.headers.get(REVISION_HEADER, "?")
                        if good
                        else (f"{response.status_code}: {response.text[:200]}")
                    )
                except httpx.HTTPError as exc:
                    good, what = False, f"{type(exc).__name__}: {exc}"
                if not good:  # how long a failure took tells a timeout from a fault
                    what += f" (after {time.monotonic() - started:.1f}s)"
                with self.lock:
                    (self.served if good else self.failures).append((time.monotonic(), what))

    def start(self) -> Load:
        for i in range(self.clients):
            thread = threading.Thread(target=self._client, name=f"load-{i}", daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(180)


def running_replicas(revision: str) -> int:
    """RUNNING replicas of a revision's ModelServer, as Serve's controller reports them."""
    app = serve.status().applications.get(contract.server_app_name(revision))
    if app is None:
        return 0
    deployment = app.deployments.get(contract.SERVER_DEPLOYMENT)
    if deployment is None:
        return 0
    states = deployment.replica_states
    return sum(int(n) for state, n in states.items() if str(getattr(state, "value", state)) == "RUNNING")


@dataclass
class ReplicaCurve:
    """Samples ``running_replicas`` every ``period_s`` in a thread: the replica curve over time."""

    revision: str
    period_s: float = 0.5
    samples: list[tuple[float, int]] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                count = running_replicas(self.revision)
            except Exception:  # the controller is busy; the next sample will do
                count = -1
            if count >= 0:
                self.samples.append((time.monotonic(), count))
            self.stop_event.wait(self.period_s)

    def start(self) -> ReplicaCurve:
        self.thread = threading.Thread(target=self._run, name="replica-curve", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(30)

    def latest(self) -> int:
        return self.samples[-1][1] if self.samples else 0
