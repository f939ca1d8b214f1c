"""Autoscaling: time to first token from zero replicas against a warm replica, and the replica curve under a
load step (0 -> N clients -> 0), on a local Ray with the operator's own serve config (local mode).

One LanguageModel (tiny random-weight model, minReplicas 0, maxReplicas 3, targetOngoingRequests 1, short
delays) is driven through its life: idle at zero, the first streamed request (cold), warm requests, a load
step with the replica count sampled every second, and the fall back to zero after the load stops.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.common import (
    Result,
    fmt,
    log,
    machine_info,
    markdown_table,
    outputs,
    ratio,
    start_ray,
    wait_for,
)

MAX_REPLICAS = 3


def manifest(source: Path) -> dict[str, Any]:
    return {
        "apiVersion": "lmops.io/v1alpha1",
        "kind": "LanguageModel",
        "metadata": {"name": "bench-scale"},
        "spec": {
            "model": {"source": f"file://{source}", "generation": {"maxNewTokens": 16}},
            "runtime": {"gpus": 0},
            "serving": {"maxOngoingRequests": 8},
            "autoscaling": {
                "minReplicas": 0,
                "maxReplicas": MAX_REPLICAS,
                "targetOngoingRequests": 1,
                "upscaleDelaySeconds": 0,
                "downscaleDelaySeconds": 2,
                "scaleFromZeroTimeoutSeconds": 300,
            },
        },
    }


def first_token_seconds(url: str) -> float:
    """Seconds from sending a streamed completion to its first token chunk."""
    body = {"model": "bench-scale", "prompt": "hello", "max_tokens": 8, "stream": True}
    started = time.perf_counter()
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=600) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.read()[:300]!r}")
        first: float | None = None
        for line in response.iter_lines():  # read to the end: the next request must find the replica free
            if first is None and line.startswith("data: ") and line != "data: [DONE]":
                first = time.perf_counter() - started
    if first is None:
        raise RuntimeError("stream ended without a token")
    return first


def run(quick: bool) -> Result:
    from lmops_operator.local.reconciler import LocalReconciler
    from lmops_runtime import local as runtime_local
    from lmops_runtime.tiny import save_tiny_model
    from testkit.load import Load
    from testkit.load import running_replicas as replicas

    clients, step_s, warm_trials = (4, 40, 3) if quick else (6, 90, 5)
    info = machine_info()
    start_ray(num_cpus=2, include_dashboard=False, log_to_driver=False)
    work = Path(tempfile.mkdtemp(prefix="bench-autoscaling-"))
    model_dir = save_tiny_model(work / "model", "generate")
    rec = LocalReconciler(path=work / "state.json")
    rec.apply(manifest(model_dir), http_port=runtime_local.free_port())
    try:
        revision = rec.run(timeout_s=600).target
        url = f"http://127.0.0.1:{rec.state().http_port}"
        log("waiting for zero replicas")
        wait_for(lambda: replicas(revision) == 0, 300, "zero replicas")
        cold = first_token_seconds(url)
        log(f"first token from zero: {cold:.2f} s")
        warm = [first_token_seconds(url) for _ in range(warm_trials)]
        log(f"warm first token median {statistics.median(warm):.3f} s")

        load = Load(url, clients=clients, max_tokens=16, model="bench-scale")
        curve: list[tuple[float, int, int]] = []  # (seconds since step, clients, running replicas)
        t0 = time.monotonic()
        load.start()
        while time.monotonic() - t0 < step_s:
            curve.append((time.monotonic() - t0, clients, replicas(revision)))
            time.sleep(1)
        load.stop()
        stopped = time.monotonic() - t0
        log("load stopped; waiting for zero replicas")
        while replicas(revision) > 0 and time.monotonic() - t0 < stopped + 300:
            curve.append((time.monotonic() - t0, 0, replicas(revision)))
            time.sleep(1)
        curve.append((time.monotonic() - t0, 0, replicas(revision)))
    finally:
        apps = [a for a in runtime_local.status() if a == "lm" or a.startswith("rev-")]
        if apps:
            runtime_local.delete_apps(apps)

    def first_at(predicate: Any) -> float | None:
        return next((t for t, _, n in curve if predicate(n)), None)

    to_max = first_at(lambda n: n >= MAX_REPLICAS)
    to_zero = next((t for t, c, n in curve if c == 0 and n == 0), None)
    completed = len(load.served)
    throughput = completed / stopped if stopped else 0.0
    back_to_zero = None if to_zero is None else to_zero - stopped
    data = {
        "ttft_from_zero_s": cold,
        "ttft_warm_median_s": statistics.median(warm),
        "ttft_warm_s": warm,
        "clients": clients,
        "step_seconds": step_s,
        "seconds_to_max_replicas": to_max,
        "seconds_back_to_zero_after_load": back_to_zero,
        "requests_completed": completed,
        "requests_failed": len(load.failures),
        "throughput_rps": throughput,
        "curve": curve,
    }
    summary = markdown_table(
        ["figure", "value"],
        [
            ["time to first token from zero replicas (s)", fmt(cold)],
            ["time to first token, warm replica, median (s)", fmt(statistics.median(warm))],
            ["cold / warm ratio", fmt(ratio(cold, statistics.median(warm)), 1)],
            [f"seconds until {MAX_REPLICAS} replicas under {clients} clients", fmt(to_max)],
            ["seconds back to zero after the load stopped", fmt(back_to_zero)],
            ["requests completed / failed during the step", f"{completed} / {len(load.failures)}"],
        ],
    )
    every = max(1, len(curve) // 25)
    rows = [[fmt(t, 1), str(c), str(n)] for t, c, n in curve[::every]]
    table = markdown_table(["t (s)", "clients", "running replicas"], rows)
    markdown = f"{summary}\n\nReplica curve under the load step:\n\n{table}"
    notes = [
        "Cold start includes Serve starting a replica and loading the model from disk; on a GPU node the "
        "Ray autoscaler also adds a worker pod first (minutes), which this local run cannot show."
    ]
    return Result("autoscaling", "Autoscaling and scale from zero", info, data, markdown, [], notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 clients for 40 s, 3 warm trials")
    args = parser.parse_args(argv)
    result = run(args.quick)
    result.save(outputs(args.quick).results)
    print(result.report())
    print(json.dumps({k: v for k, v in result.data.items() if k != "curve"}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
