"""The operator benchmark's plumbing: the API server's request counters, the operator in its own process, and
two watches that see when every model is current and Ready."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import wait_for

GROUP, VERSION, PLURAL = "lmops.io", "v1alpha1", "languagemodels"
RAY_GROUP, RAY_VERSION, RAY_PLURAL = "ray.io", "v1", "rayservices"
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION"})
# Requests the operator never makes (it touches no endpoints or leases): /metrics scrapes (resource ""), the
# API server's own loopback writes (the ``kubernetes`` Service's endpoints, ClusterIP IPAddress objects it
# allocates for each new Service) and the controller-manager's leases.
IGNORED_RESOURCES = frozenset({"", "leases", "endpoints", "endpointslices", "ipaddresses"})
QUIET_S = 4.0
_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


# --- pure helpers -------------------------------------------------------------------------------------------


def parse_request_totals(text: str) -> Counter[tuple[str, str]]:
    """``apiserver_request_total`` summed by (verb, resource) from a Prometheus text exposition."""
    totals: Counter[tuple[str, str]] = Counter()
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        totals[(labels.get("verb", ""), labels.get("resource", ""))] += int(float(match["value"]))
    return totals


def operator_requests(
    before: Counter[tuple[str, str]], after: Counter[tuple[str, str]], own: Counter[tuple[str, str]]
) -> Counter[tuple[str, str]]:
    """Requests between two scrapes, less the benchmark's own and the resources no reconcile touches."""
    delta: Counter[tuple[str, str]] = Counter()
    for key in set(before) | set(after):
        if key[1] in IGNORED_RESOURCES:
            continue
        count = after.get(key, 0) - before.get(key, 0) - own.get(key, 0)
        if count > 0:
            delta[key] = count
    return delta


def writes(requests: Counter[tuple[str, str]]) -> Counter[tuple[str, str]]:
    return Counter({key: n for key, n in requests.items() if key[0] in WRITE_VERBS})


# --- the API server -----------------------------------------------------------------------------------------


class ApiMetrics:
    """Scrapes the API server's /metrics as the admin (client certificate)."""

    def __init__(self, plane: Any) -> None:
        self.url = f"{plane.server}/metrics"
        self.context = ssl.create_default_context(cafile=str(plane.ca_path))
        self.context.load_cert_chain(str(plane.admin_cert_path), str(plane.admin_key_path))

    def totals(self) -> Counter[tuple[str, str]]:
        with urllib.request.urlopen(self.url, context=self.context, timeout=30) as response:
            return parse_request_totals(response.read().decode())

    def watchers(self, resource: str) -> int:
        """Open WATCH requests on ``resource`` (the operator has started watching when this grows)."""
        with urllib.request.urlopen(self.url, context=self.context, timeout=30) as response:
            text = response.read().decode()
        total = 0
        for line in text.splitlines():
            if (
                line.startswith("apiserver_longrunning_requests{")
                and 'verb="WATCH"' in line
                and f'resource="{resource}"' in line
            ):
                total += int(float(line.rsplit(" ", 1)[1]))
        return total


def wait_quiet(metrics: ApiMetrics, timeout_s: float) -> tuple[Counter[tuple[str, str]], bool]:
    """Scrape until no request (ignored resources aside) came for ``QUIET_S`` s: (last scrape, whether it
    went quiet). An operator that keeps polling idle models never goes quiet; that is reported, not hidden."""
    last = metrics.totals()
    quiet_since = time.monotonic()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = metrics.totals()
        if operator_requests(last, now, Counter()):
            quiet_since = time.monotonic()
        last = now
        if time.monotonic() - quiet_since >= QUIET_S:
            return last, True
    return last, False


# --- the operator process -----------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: the kernel kills the operator if the benchmark dies without stopping it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# What ``lmops operator run`` does (settings from LMOPS_*, metrics port, OperatorRun), without the CLI's
# dispatcher, so that a half-written subcommand elsewhere in the tree cannot stop the benchmark.
_OPERATOR_MAIN = """
import asyncio, sys
from lmops_operator import observability
from lmops_operator.commands.operator import OperatorRun
from lmops_operator.settings import Settings
settings = Settings.from_env()
observability.configure_logging(settings.log_level)
observability.serve_metrics(int(sys.argv[2]), addr="127.0.0.1")
asyncio.run(OperatorRun(settings, kubeconfig=sys.argv[1]).run())
"""


class OperatorProcess:
    """The operator (``lmops operator run``'s code) watching one namespace, metrics on a free port."""

    def __init__(self, kubeconfig: Path, namespace: str, log_path: Path) -> None:
        from testkit.controlplane import free_port

        self.metrics_port = free_port()
        self.log_path = log_path
        env = {
            **os.environ,
            "LMOPS_WATCH_NAMESPACES": namespace,
            "LMOPS_LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-c", _OPERATOR_MAIN, str(kubeconfig), str(self.metrics_port)]
        self.log_file = log_path.open("ab")
        self.process = subprocess.Popen(
            command, env=env, stdout=self.log_file, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )

    def reconciles(self) -> float:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("lmops_operator_reconcile_total "):
                    return float(line.split()[1])
        return 0.0

    def peak_rss(self) -> int:
        """The kernel's high-water mark of resident memory for the process (VmHWM), in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("VmHWM not found")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"operator exited with {self.process.returncode}:\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()


def start_operator(plane: Any, metrics: ApiMetrics, namespace: str, log_path: Path) -> OperatorProcess:
    """Start the operator and wait until it serves metrics and its LanguageModel watch is open."""
    watching = metrics.watchers(PLURAL)
    op = OperatorProcess(plane.kubeconfig, namespace, log_path)

    def ready() -> bool:
        op.check_alive()
        try:
            op.reconciles()
        except OSError:
            return False
        return metrics.watchers(PLURAL) > watching

    wait_for(ready, 120, "operator start", interval_s=0.3)
    return op


# --- watching convergence -----------------------------------------------------------------------------------


@dataclass
class Convergence:
    """Tracks, from two watches, which LanguageModels are current and which have their RayService."""

    names: set[str]
    current: set[str] = field(default_factory=set)
    first_status: dict[str, dict[str, Any]] = field(default_factory=dict)  # when first current
    last_status: dict[str, dict[str, Any]] = field(default_factory=dict)
    ray_services: set[str] = field(default_factory=set)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    ready: set[str] = field(default_factory=set)
    all_ready: threading.Event = field(default_factory=threading.Event)
    done_at: float | None = None
    watch_calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)

    def on_model(self, obj: dict[str, Any]) -> None:
        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        if status.get("observedGeneration") == meta.get("generation"):
            with self.lock:
                self.current.add(meta["name"])
                self.first_status.setdefault(meta["name"], status)
                self.last_status[meta["name"]] = status
                if status.get("phase") == "Ready":
                    self.ready.add(meta["name"])
                    if self.names <= self.ready:
                        self.all_ready.set()
            self._check()

    def on_ray_service(self, obj: dict[str, Any]) -> None:
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
            if ref.get("kind") == "LanguageModel" and ref.get("controller"):
                with self.lock:
                    self.ray_services.add(ref["name"])
                    self.objects[ref["name"]] = obj
        self._check()

    def _check(self) -> None:
        with self.lock:
            if self.done_at is None and self.names <= self.current and self.names <= self.ray_services:
                self.done_at = time.perf_counter()
                self.done.set()


@contextlib.contextmanager
def watching(api: Any, namespace: str, convergence: Convergence) -> Iterator[None]:
    """Two watch threads (LanguageModels, RayServices); each (re)connect is one WATCH request we count."""
    from kubernetes import client, watch

    custom = client.CustomObjectsApi(api)
    watch_api: Any = watch
    stop = threading.Event()
    watchers: list[Any] = []

    def loop(group: str, version: str, plural: str, handle: Any) -> None:
        def listing(**kwargs: Any) -> Any:
            convergence.watch_calls[("WATCH", plural)] += 1
            return custom.list_namespaced_custom_object(group, version, namespace, plural, **kwargs)

        while not stop.is_set():
            w = watch_api.Watch()
            watchers.append(w)
            try:
                for event in w.stream(listing, timeout_seconds=3600):
                    handle(event["object"])
                    if stop.is_set():
                        break
            except BaseException as exc:  # reconnect on anything: a dead watcher would hang the benchmark
                if not stop.is_set():
                    print(f"benchmark watch of {plural} restarts after {exc!r}", file=sys.stderr)
                    time.sleep(0.5)

    threads = [
        threading.Thread(target=loop, args=(GROUP, VERSION, PLURAL, convergence.on_model), daemon=True),
        threading.Thread(
            target=loop, args=(RAY_GROUP, RAY_VERSION, RAY_PLURAL, convergence.on_ray_service), daemon=True
        ),
    ]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for w in watchers:
            w.stop()


# --- namespaces and waiting ---------------------------------------------------------------------------


def create_namespace(api: Any, name: str) -> None:
    from kubernetes import client

    core: Any = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    # The service-account controller adds the namespace's default ServiceAccount right after creation; wait
    # for it so its requests fall before the first scrape.
    wait_for(
        lambda: bool(client.CoreV1Api(api).list_namespaced_service_account(name).items), 30, "default SA"
    )


def wait_event(event: threading.Event, op: OperatorProcess, timeout_s: float, what: Any) -> None:
    """Wait for ``event`` while checking the operator still runs; ``what()`` says how far it got."""
    deadline = time.perf_counter() + timeout_s
    while not event.wait(2):
        op.check_alive()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what()} after {timeout_s:.0f} s")
