"""Operator at scale, on a real control plane: N LanguageModels against one client doing the same writes.

A real etcd + kube-apiserver + kube-controller-manager (``testkit/controlplane.py``) with lmops' and
KubeRay's CRDs. The operator is the production entry point, ``lmops operator run``, in its own process (so
its peak memory is its own: the kernel's high-water mark, VmHWM), watching one namespace per size.

For each N:
- create N LanguageModels one after another; time until every one has its RayService and a status whose
  ``observedGeneration`` equals its ``metadata.generation`` ("all current");
- report every RayService's Serve applications RUNNING, as KubeRay would; time until every model is Ready;
- API requests the operator made in each phase, read from the API server's own ``apiserver_request_total``
  (minus the benchmark's own requests, which it counts);
- restart the operator (a forced resync): it lists and watches each kind once, then reconciles all N; every
  other request it makes is counted, and must be 0;
- the floors, on the same API server in the same run: one client creating, model after model, the
  LanguageModel, every child the operator creates for it (the planner's own objects, owned by that model)
  and one status patch; then the same client patching the N statuses to Ready.
"""

from __future__ import annotations

import argparse
import copy
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from bench.apiserver import (
    PLURAL,
    RAY_PLURAL,
    ApiMetrics,
    Convergence,
    create_namespace,
    operator_requests,
    start_operator,
    wait_event,
    wait_quiet,
    watching,
    writes,
)
from bench.common import REPO_ROOT, Result, fmt, log, machine_info, markdown_table, outputs, ratio, wait_for

READ_VERBS = frozenset({"LIST", "WATCH"})


def language_model(name: str, template: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(template)
    body["metadata"] = {"name": name}
    return body


def owned_copy(obj: dict[str, Any], namespace: str, uid: str) -> dict[str, Any]:
    """``obj`` (an object the planner built) moved to ``namespace``, its controller reference to ``uid``."""
    out = copy.deepcopy(obj)
    meta = out["metadata"]
    meta["namespace"] = namespace
    for ref in meta.get("ownerReferences") or []:
        ref["uid"] = uid
    return out


def _jsonable(counter: Counter[tuple[str, str]]) -> dict[str, int]:
    return {f"{verb} {resource}": n for (verb, resource), n in sorted(counter.items())}


def _phase_requests(
    metrics: ApiMetrics, before: Counter[tuple[str, str]], own: Counter[tuple[str, str]], n: int
) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """Wait until the API server is quiet; the operator's requests since ``before``, and the new scrape.
    Watch requests are left out: the operator's are long-lived (re-opened every few minutes), and the
    controller-manager's own re-opened watches land in the same counters."""
    after, quiet = wait_quiet(metrics, 60 + n / 2)
    if not quiet:
        log("operator: API requests never stopped (reported)")
    requests = operator_requests(before, after, own)
    return Counter({key: v for key, v in requests.items() if key[0] != "WATCH"}), after


def measure_operator(plane: Any, api: Any, metrics: ApiMetrics, n: int, workdir: Path) -> dict[str, Any]:
    """Create N models, report KubeRay's RUNNING, then restart the operator (forced resync)."""
    from bench.rollout import kuberay_running_status
    from lmops_operator.k8s.client import Kube
    from lmops_operator.k8s.resources import LANGUAGE_MODEL, RAY_SERVICE

    kube = Kube(api)
    namespace = f"lm-{n}"
    create_namespace(api, namespace)
    template = yaml.safe_load((REPO_ROOT / "examples" / "tiny.yaml").read_text())
    names = [f"m{i:04d}" for i in range(n)]
    op = start_operator(plane, metrics, namespace, workdir / f"operator-{n}.log")
    result: dict[str, Any] = {"n": n}
    timeout = 180 + 2.0 * n
    convergence = Convergence(set(names))
    try:
        before, _ = wait_quiet(metrics, 60)
        reconciles_before = op.reconciles()
        own: Counter[tuple[str, str]] = Counter()
        with watching(api, namespace, convergence):
            started = time.perf_counter()
            for name in names:  # the floor's client, as below
                kube.create(LANGUAGE_MODEL.collection(namespace), language_model(name, template))
            own[("POST", PLURAL)] += n
            result["create_s"] = time.perf_counter() - started
            log(
                f"operator: {n} LanguageModels created in {result['create_s']:.1f} s; waiting for convergence"
            )
            wait_event(
                convergence.done,
                op,
                timeout,
                lambda: (
                    f"{len(convergence.current)}/{n} current, {len(convergence.ray_services)}/{n} RayServices"
                ),
            )
            assert convergence.done_at is not None
            result["converge_s"] = convergence.done_at - started
            converge, middle = _phase_requests(metrics, before, own, n)
            result["converge_requests"] = _jsonable(converge)
            result["converge_requests_total"] = sum(converge.values())
            log(f"operator: reporting the {n} RayServices RUNNING (as KubeRay would)")
            own = Counter()
            faked = time.perf_counter()
            for name in names:  # with the floor's client: KubeRay's Go client costs the machine less still
                kube.merge_patch(
                    RAY_SERVICE.item(namespace, name) + "/status",
                    {"status": kuberay_running_status(convergence.objects[name])},
                )
            own[("PATCH", RAY_PLURAL)] += n
            result["report_running_s"] = time.perf_counter() - faked
            log(f"operator: the {n} RayServices reported RUNNING in {result['report_running_s']:.1f} s")
            wait_event(convergence.all_ready, op, timeout, lambda: f"{len(convergence.ready)}/{n} Ready")
            result["ready_s"] = time.perf_counter() - faked
            ready, _ = _phase_requests(metrics, middle, own, n)
            result["ready_requests"] = _jsonable(ready)
            result["ready_requests_total"] = sum(ready.values())
        result["peak_rss_bytes"] = op.peak_rss()
        result["reconciles"] = op.reconciles() - reconciles_before
    finally:
        op.stop()
    result.update(measure_resync(plane, metrics, namespace, n, timeout, workdir))
    statuses = (convergence.first_status, convergence.last_status)
    result["floor"] = measure_floor(api, metrics, template, names, statuses, f"floor-{n}")
    return result


def measure_resync(
    plane: Any, metrics: ApiMetrics, namespace: str, n: int, timeout: float, workdir: Path
) -> dict[str, Any]:
    """A fresh operator process lists and reconciles every model; nothing changed, so nothing may be sent
    beyond its lists and watches."""
    log(f"operator: forced resync of {n} models (operator restart)")
    before, _ = wait_quiet(metrics, 60)
    op = start_operator(plane, metrics, namespace, workdir / f"operator-{n}-resync.log")
    out: dict[str, Any] = {}
    try:
        started = time.perf_counter()
        wait_for(lambda: op.reconciles() >= n, timeout, f"{n} reconciles after restart", interval_s=0.5)
        out["resync_s"] = time.perf_counter() - started
        resync, _ = _phase_requests(metrics, before, Counter(), n)
        out["resync_reconciles"] = op.reconciles()
        out["resync_requests"] = _jsonable(resync)
        out["resync_writes_total"] = sum(writes(resync).values())
        out["resync_after_sync_total"] = sum(v for (verb, _), v in resync.items() if verb not in READ_VERBS)
        out["resync_rss_bytes"] = op.peak_rss()
    finally:
        op.stop()
    return out


def _floor_objects(template: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """What the operator creates for model ``name``: the planner's objects for a fresh model."""
    from lmops_operator.api import load_language_model
    from lmops_operator.planning.plan import Observed, plan, utcnow
    from lmops_operator.settings import Settings

    body = language_model(name, template)
    body["metadata"].update(namespace="floor", uid="floor-uid", generation=1)
    lm = load_language_model(body)
    return plan(lm, Observed(now=utcnow()), Settings()).objects


def _wait_set(event: threading.Event, timeout_s: float, what: str) -> None:
    if not event.wait(timeout_s):
        raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")


def measure_floor(
    api: Any,
    metrics: ApiMetrics,
    template: dict[str, Any],
    names: list[str],
    statuses: tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]],
    namespace: str,
) -> dict[str, Any]:
    """One client, one request at a time, in a fresh namespace: per model the LanguageModel, its children
    and the status the operator first wrote; then every status patched to the operator's final (Ready) one.
    Both phases end as the operator's do: when the benchmark's own watches have seen every model current
    (then Ready), so the watches' share of this process and of the API server is on both sides."""
    from lmops_operator.k8s.client import Kube
    from lmops_operator.k8s.resources import LANGUAGE_MODEL, resource_of

    kube = Kube(api)
    create_namespace(api, namespace)
    first, last = statuses
    planned = {name: _floor_objects(template, name) for name in names}
    convergence = Convergence(set(names))
    before, _ = wait_quiet(metrics, 60)
    with watching(api, namespace, convergence):
        started = time.perf_counter()
        for name in names:
            body = {**language_model(name, template), "metadata": {"name": name, "namespace": namespace}}
            created = kube.create(LANGUAGE_MODEL.collection(namespace), body)
            uid = created["metadata"]["uid"]
            for obj in planned[name]:
                kube.create(resource_of(obj).collection(namespace), owned_copy(obj, namespace, uid))
            kube.merge_patch(LANGUAGE_MODEL.item(namespace, name) + "/status", {"status": first[name]})
        _wait_set(convergence.done, 60 + len(names), "the floor's models seen current")
        assert convergence.done_at is not None
        create_s = convergence.done_at - started
        started = time.perf_counter()
        for name in names:
            kube.merge_patch(LANGUAGE_MODEL.item(namespace, name) + "/status", {"status": last[name]})
        _wait_set(convergence.all_ready, 60 + len(names), "the floor's models seen Ready")
        ready_s = time.perf_counter() - started
    after, _ = wait_quiet(metrics, 60)
    per_model = 2 + len(planned[names[0]])  # the LanguageModel, its children, one status patch
    own_total = len(names) * (per_model + 1)  # and the Ready patch
    return {
        "create_s": create_s,
        "ready_s": ready_s,
        # the requests the operator's own would be, per model: its children and two status patches
        "requests_per_model": len(planned[names[0]]) + 2,
        "requests_total": own_total,
        # what else reached the API server meanwhile (the garbage collector's and the admin's own reads)
        "other_requests": sum(operator_requests(before, after, Counter()).values()) - own_total,
    }


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


def rss_budget_mib(n: int) -> float:
    """The issue's bar: 150 MiB plus 150 KiB per model."""
    return 150 + n * 150 / 1024


def render(data: dict[str, Any]) -> tuple[str, list[str]]:
    rows, detail, notes = [], [], []
    for key, r in data["sizes"].items():
        n, floor = int(key), r["floor"]
        per_model = (r["converge_requests_total"] + r["ready_requests_total"]) / n
        rss = r["peak_rss_bytes"] / 2**20
        rows.append(
            [
                key,
                fmt(r["converge_s"]),
                fmt(r["create_s"]),
                fmt(floor["create_s"]),
                fmt(ratio(r["converge_s"], floor["create_s"]), 2),
                fmt(r["ready_s"]),
                fmt(r.get("report_running_s")),
                fmt(floor["ready_s"]),
                fmt(ratio(r["ready_s"], floor["ready_s"]), 2),
                fmt(per_model),
                str(floor["requests_per_model"]),
                fmt(r["reconciles"] / n),
                f"{rss:.0f} / {rss_budget_mib(n):.0f}",
                str(r["resync_after_sync_total"]),
                fmt(r["resync_s"]),
            ]
        )
        detail.append(
            [
                key,
                ", ".join(f"{k}: {v}" for k, v in r["converge_requests"].items()),
                ", ".join(f"{k}: {v}" for k, v in r["ready_requests"].items()),
                ", ".join(f"{k}: {v}" for k, v in r["resync_requests"].items()) or "none",
            ]
        )
        if r["resync_after_sync_total"]:
            notes.append(
                f"N={key}: {r['resync_after_sync_total']} requests after the caches synced in the resync"
            )
    table = markdown_table(
        [
            "N",
            "operator: all current s",
            "of which: the benchmark creating the models s",
            "floor: same objects, one client s",
            "ratio",
            "RUNNING -> all Ready s",
            "of which: the benchmark reporting RUNNING s",
            "floor: N status patches s",
            "ratio",
            "operator requests / model",
            "floor requests / model (no LanguageModel create)",
            "reconciles / model",
            "peak RSS MiB / bar",
            "resync requests after caches synced",
            "resync s",
        ],
        rows,
    )
    breakdown = markdown_table(
        ["N", "until all current", "RUNNING -> all Ready", "forced resync (restart)"], detail
    )
    body = "\n\n".join(
        [
            "Operator: `lmops operator run`'s code in its own process, watching one namespace, against a "
            "real kube-apiserver + etcd + kube-controller-manager; it reads every model and child from its "
            'own watches (`operator/lmops_operator/k8s/cache.py`). "All current" is the time from the first '
            "LanguageModel created until every one has its RayService and `status.observedGeneration == "
            "metadata.generation`. Its floor is one client doing, on the same API server in the same run, "
            "the "
            "same work with no decisions: per model, create the LanguageModel, create every child the "
            "operator creates (the planner's objects: ControllerRevision, RayService, Service, "
            "PodDisruptionBudget, NetworkPolicy, each owned by the model) and patch the status once. No "
            "KubeRay runs here: the benchmark then reports every RayService's Serve applications RUNNING (a "
            "status patch, as KubeRay would write it) and times until every model is Ready; that floor is "
            "the same client patching the N statuses to Ready directly. Every phase, the operator's and the "
            "floor's alike, ends when the benchmark's own watches have seen every model current (then "
            "Ready), and every request the benchmark sends goes through the operator's lean REST client "
            "(`k8s/client.py`), so the measuring costs both sides the same. API requests are the API "
            "server's own `apiserver_request_total`, less the benchmark's own (creates, status patches, "
            "watches) and less what the operator never does (leases, endpoints, the ClusterIP addresses "
            "the API server allocates). The forced resync is an operator restart: it lists and watches "
            "each kind once, then reconciles every model with nothing changed; the column counts every "
            "other request. Peak RSS is the operator process's VmHWM over both runs; the bar: 150 MiB + "
            "150 KiB per model.",
            table,
            "Operator API requests by verb and resource:",
            breakdown,
        ]
    )
    return body + "\n", notes


def plot(data: dict[str, Any], img_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(data["sizes"])
    xs = [int(s) for s in sizes]
    runs = [data["sizes"][s] for s in sizes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot(xs, [r["converge_s"] for r in runs], marker="o", label="operator: all N current")
    left.plot(xs, [r["floor"]["create_s"] for r in runs], marker="o", ls="--", label="floor: same objects")
    left.plot(xs, [r["ready_s"] for r in runs], marker="s", label="operator: RUNNING -> all Ready")
    left.plot(xs, [r["floor"]["ready_s"] for r in runs], marker="s", ls="--", label="floor: N status patches")
    left.set_xlabel("LanguageModels (N)")
    left.set_ylabel("seconds")
    left.set_title("Time")
    per_model = [
        (r["converge_requests_total"] + r["ready_requests_total"]) / int(s)
        for s, r in zip(sizes, runs, strict=True)
    ]
    right.plot(xs, per_model, marker="o", label="operator: create -> Ready")
    right.plot(xs, [r["floor"]["requests_per_model"] for r in runs], marker="o", ls="--", label="floor")
    resync = [r["resync_after_sync_total"] / int(s) for s, r in zip(sizes, runs, strict=True)]
    right.plot(xs, resync, marker="x", label="forced resync, after caches synced")
    right.set_xlabel("LanguageModels (N)")
    right.set_ylabel("API requests per model")
    right.set_title("Requests")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Operator at scale vs. one client doing the same writes")
    fig.tight_layout()
    img_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(img_dir / "operator-scale.png", dpi=110)
    plt.close(fig)
    return ["img/operator-scale.png"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="number of LanguageModels (repeatable)")
    parser.add_argument("--quick", action="store_true", help="N = 10 and 30")
    args = parser.parse_args(argv)
    sizes = args.n or ([10, 30] if args.quick else [100, 500, 1000])
    result = run(sizes)
    out = outputs(args.quick)
    result.images = plot(result.data, out.images)
    result.save(out.results)
    print(result.report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
