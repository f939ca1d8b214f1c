"""Operator at scale, on a real control plane: N LanguageModels against N RayServices created directly.

A real etcd + kube-apiserver + kube-controller-manager (``testkit/controlplane.py``) with lmops' and
KubeRay's CRDs. The operator is the production entry point, ``lmops operator run``, in its own process (so
its peak memory is its own: the kernel's high-water mark, VmHWM), watching one namespace per size.

For each N:
- create N LanguageModels one after another; time until every one has its RayService and a status whose
  ``observedGeneration`` equals its ``metadata.generation``;
- API requests the operator made, read from the API server's own ``apiserver_request_total`` (minus the
  benchmark's own requests, which it counts), per reconcile (``lmops_operator_reconcile_total``);
- restart the operator, which re-lists and reconciles all N (a forced resync): writes to the API server
  during it must be 0, since nothing changed;
- the floor: the same API server, one client creating the N RayServices the operator produced, directly.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import signal
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

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from bench.apiserver_metrics import ApiMetrics, operator_requests, wait_quiet, writes
from bench.common import (
    REPO_ROOT,
    Result,
    log,
    machine_info,
    outputs,
    ratio,
    wait_for,
)
from bench.operator_scale_report import plot, render
from testkit.process import die_with_parent

GROUP, VERSION, PLURAL = "lmops.io", "v1alpha1", "languagemodels"
RAY_GROUP, RAY_VERSION, RAY_PLURAL = "ray.io", "v1", "rayservices"


# --- pure helpers -------------------------------------------------------------------------------------------


def language_model(name: str, template: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(template)
    body["metadata"] = {"name": name}
    return body


def bare_copy(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    """What one client would POST to create ``obj`` itself: its spec, name and labels, no server fields."""
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": meta["name"], "namespace": namespace, "labels": dict(meta.get("labels") or {})},
        "spec": obj["spec"],
    }


# --- the operator process -----------------------------------------------------------------------------------


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
            command, env=env, stdout=self.log_file, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
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
            with contextlib.suppress(Exception):
                for event in w.stream(listing, timeout_seconds=3600):
                    handle(event["object"])
                    if stop.is_set():
                        break

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


# --- one size -----------------------------------------------------------------------------------------------


def _namespace(api: Any, name: str) -> None:
    from kubernetes import client

    core: Any = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    # The service-account controller adds the namespace's default ServiceAccount right after creation; wait
    # for it so its requests fall before the first scrape.
    wait_for(
        lambda: bool(client.CoreV1Api(api).list_namespaced_service_account(name).items), 30, "default SA"
    )


def _wait(event: threading.Event, op: OperatorProcess, timeout_s: float, what: Any) -> None:
    deadline = time.perf_counter() + timeout_s
    while not event.wait(2):
        op.check_alive()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what()} after {timeout_s:.0f} s")


def measure_operator(plane: Any, api: Any, metrics: ApiMetrics, n: int, workdir: Path) -> dict[str, Any]:
    """Create N models, fake KubeRay's RUNNING status, then restart the operator (forced resync)."""
    from kubernetes import client

    from bench.rollout import kuberay_running_status

    custom: Any = client.CustomObjectsApi(api)
    namespace = f"lm-{n}"
    _namespace(api, namespace)
    template = yaml.safe_load((REPO_ROOT / "examples" / "tiny.yaml").read_text())
    names = [f"m{i:04d}" for i in range(n)]
    op = start_operator(plane, metrics, namespace, workdir / f"operator-{n}.log")
    result: dict[str, Any] = {"n": n}
    timeout = 180 + 2.0 * n
    try:
        before, _ = wait_quiet(metrics, 60)
        reconciles_before = op.reconciles()
        convergence = Convergence(set(names))
        own: Counter[tuple[str, str]] = Counter()
        with watching(api, namespace, convergence):
            started = time.perf_counter()
            for name in names:
                custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, language_model(name, template)
                )
            own[("POST", PLURAL)] += n
            created = time.perf_counter()
            log(f"operator: {n} LanguageModels created in {created - started:.1f} s; waiting for convergence")
            _wait(
                convergence.done,
                op,
                timeout,
                lambda: (
                    f"{len(convergence.current)}/{n} current, {len(convergence.ray_services)}/{n} RayServices"
                ),
            )
            assert convergence.done_at is not None
            result["converge_s"] = convergence.done_at - started
            result["create_s"] = created - started
            # KubeRay's side, faked as the control-plane tests do: every Serve application RUNNING.
            log(f"operator: reporting the {n} RayServices RUNNING (as KubeRay would)")
            faked = time.perf_counter()
            for name in names:
                custom.patch_namespaced_custom_object_status(
                    RAY_GROUP,
                    RAY_VERSION,
                    namespace,
                    RAY_PLURAL,
                    name,
                    {"status": kuberay_running_status(convergence.objects[name])},
                    _content_type="application/merge-patch+json",
                )
            own[("PATCH", RAY_PLURAL)] += n
            _wait(convergence.all_ready, op, timeout, lambda: f"{len(convergence.ready)}/{n} Ready")
            result["ready_s"] = time.perf_counter() - faked
            after, quiet = wait_quiet(metrics, 60 + n / 2)
            own.update(convergence.watch_calls)
        result["went_quiet"] = quiet
        result["peak_rss_bytes"] = op.peak_rss()
        reconciles = op.reconciles() - reconciles_before
        requests = operator_requests(before, after, own)
        result["reconciles"] = reconciles
        result["requests"] = _jsonable(requests)
        result["requests_total"] = sum(requests.values())
        result["requests_per_reconcile"] = ratio(sum(requests.values()), reconciles)
        result["requests_per_model"] = sum(requests.values()) / n
    finally:
        op.stop()
    # Forced resync: a fresh operator process lists and reconciles every model; nothing changed.
    log(f"operator: forced resync of {n} models (operator restart)")
    before, _ = wait_quiet(metrics, 60)
    op = start_operator(plane, metrics, namespace, workdir / f"operator-{n}-resync.log")
    try:
        started = time.perf_counter()
        wait_for(lambda: op.reconciles() >= n, timeout, f"{n} reconciles after restart", interval_s=0.5)
        result["resync_s"] = time.perf_counter() - started
        after, quiet = wait_quiet(metrics, 60 + n / 2)
        result["resync_went_quiet"] = quiet
        result["resync_reconciles"] = op.reconciles()
        resync = operator_requests(before, after, Counter())
        result["resync_requests"] = _jsonable(resync)
        result["resync_writes"] = _jsonable(writes(resync))
        result["resync_writes_total"] = sum(writes(resync).values())
        result["peak_rss_bytes"] = max(result["peak_rss_bytes"], op.peak_rss())
    finally:
        op.stop()
    listed: Any = custom.list_namespaced_custom_object(RAY_GROUP, RAY_VERSION, namespace, RAY_PLURAL)
    result["floor"] = measure_floor(api, metrics, listed["items"], f"floor-{n}")
    return result


def measure_floor(
    api: Any, metrics: ApiMetrics, objects: list[dict[str, Any]], namespace: str
) -> dict[str, Any]:
    """One client creating the operator's RayServices directly, one after another, in a fresh namespace."""
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    _namespace(api, namespace)
    bodies = [bare_copy(obj, namespace) for obj in objects]
    before, _ = wait_quiet(metrics, 60)
    started = time.perf_counter()
    for body in bodies:
        custom.create_namespaced_custom_object(RAY_GROUP, RAY_VERSION, namespace, RAY_PLURAL, body)
    elapsed = time.perf_counter() - started
    after = metrics.totals()
    own = Counter({("POST", RAY_PLURAL): len(bodies)})
    return {
        "n": len(bodies),
        "create_s": elapsed,
        "requests_total": len(bodies),
        "other_requests": sum(operator_requests(before, after, own).values()),
    }


def _jsonable(counter: Counter[tuple[str, str]]) -> dict[str, int]:
    return {f"{verb} {resource}": n for (verb, resource), n in sorted(counter.items())}


# --- the benchmark ------------------------------------------------------------------------------------------


def run(sizes: list[int]) -> Result:
    from testkit import controlplane
    from testkit.controlplane import DEFAULT_BIN_DIR, ControlPlane

    # The harness's Service range is a /24 (254 ClusterIPs) and the operator gives every model a Service:
    # 100 + 500 models need more. A /16 keeps 10.0.0.1 (the API server certificate's service IP) first.
    controlplane.SERVICE_CIDR = "10.0.0.0/16"

    info = machine_info()
    crd_paths = [*sorted((REPO_ROOT / "crds").glob("*.yaml")), DEFAULT_BIN_DIR / "kuberay-crds"]
    data: dict[str, Any] = {"sizes": {}}
    plane = ControlPlane(crd_paths=crd_paths)
    log("operator: starting the control plane")
    plane.start()
    try:
        metrics = ApiMetrics(plane)
        api = plane.api_client()
        for n in sizes:
            log(f"operator: N = {n}")
            data["sizes"][str(n)] = measure_operator(plane, api, metrics, n, plane.workdir)
    finally:
        plane.stop()
    markdown, notes = render(data)
    return Result("operator", "Operator at scale", info, data, markdown, [], notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="number of LanguageModels (repeatable)")
    parser.add_argument("--quick", action="store_true", help="N = 10 and 30")
    args = parser.parse_args(argv)
    sizes = args.n or ([10, 30] if args.quick else [100, 500])
    result = run(sizes)
    out = outputs(args.quick)
    result.images = plot(result.data, out.images)
    result.save(out.results)
    print(result.report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
