"""Serving throughput: plain ``model.generate`` vs the lmops runtime over HTTP vs a bare static-batch loop.

All three serve the same model files (a random-weight Llama-style model built here, saved, and loaded with
``from_pretrained``), the same prompts (fixed length) and the same ``max_new_tokens``, in one process run:

a. baseline: what a user writes first, one request at a time through ``model.generate`` behind a lock, with
   C client threads queueing on it;
b. lmops: the Router and one ModelServer on a local Ray Serve, deployed from the serve config document the
   operator gives KubeRay, called over HTTP (OpenAI ``/v1/completions``, streaming) by C concurrent clients;
c. ceiling: the same model decoding a full static batch of C prompts in a bare loop (no server, no HTTP, no
   scheduling): what the hardware gives this model at batch size C.

Two analytic limits close the table: memory bandwidth (every decode step reads all weights once, so
tokens/s <= C * bandwidth / weight bytes) and arithmetic (tokens/s <= FLOP/s / (2 * parameters)); both
bandwidth and FLOP/s are measured in the same run. The model's EOS logit row is zeroed, so every request
generates exactly ``max_new_tokens`` tokens and the three paths do equal work (the tables count the tokens
actually returned and flag any shortfall).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    Result,
    Stopwatch,
    log,
    machine_info,
    median,
    outputs,
    percentile,
    start_ray,
)
from bench.serving_baselines import (
    ModelPreset,
    RunStats,
    Workload,
    bandwidth_ceiling,
    build_model,
    compute_ceiling,
    load,
    make_prompts,
    measure_bandwidth,
    measure_flops,
    model_facts,
    run_in_process,
    run_stats,
    warm_up,
)
from bench.serving_report import plot, render, report_title

MODEL_NAME = "bench"


PRESETS: dict[str, ModelPreset] = {
    # ~1 M parameters: --quick only, to check the plumbing in seconds.
    "quick": ModelPreset(128, 384, 4, 4, 2, 256),
    # ~25 M parameters, 100 MB of fp32 weights: large enough that the matmuls, not Python, dominate on CPU.
    "cpu": ModelPreset(512, 1536, 8, 8, 4, 512),
    # ~0.8 B parameters, 1.6 GB in bf16: large enough that a decode step is bound by GPU memory bandwidth.
    "gpu": ModelPreset(2048, 5632, 16, 16, 8, 1024),
}


WORKLOADS: dict[str, Workload] = {
    "quick": Workload(
        prompt_tokens=16, max_new_tokens=16, concurrency=(1, 4), requests_per_client=2, trials=2
    ),
    # One request per client per trial: the one-at-a-time baseline is what bounds the run's length.
    "full": Workload(
        prompt_tokens=32, max_new_tokens=64, concurrency=(1, 8, 32), requests_per_client=1, trials=3
    ),
    # The sequential baseline of a 0.76 B model must fit a 10-minute GPU lease.
    "gpu": Workload(
        prompt_tokens=128, max_new_tokens=64, concurrency=(1, 8, 32), requests_per_client=1, trials=3
    ),
}


# --- the model ----------------------------------------------------------------------------------------------


# --- limits -------------------------------------------------------------------------------------------------


# --- (a) baseline -------------------------------------------------------------------------------------------


# --- (c) ceiling --------------------------------------------------------------------------------------------


# --- (b) lmops ----------------------------------------------------------------------------------------------


def serve_document(
    model_dir: Path,
    *,
    device: str,
    dtype: str,
    max_batch: int,
    cpus: int,
    stream_interval_ms: int | None = None,
    engine: str = "auto",
) -> dict[str, Any]:
    """The serve config the operator would deploy for this model's first revision, built by its planner.

    A LanguageModel for the saved model goes through the operator's own ``decide`` with an empty revision
    store and nothing running (a first deploy): its serve config is the document KubeRay would receive as
    ``serveConfigV2`` (the Router application ``lm`` plus ``rev-<revision>``), which local mode deploys.
    """
    from datetime import UTC, datetime

    from lmops_operator.api import load_language_model
    from lmops_operator.planning.decide import ObservedState, decide

    lm = load_language_model(
        {
            "apiVersion": "lmops.io/v1alpha1",
            "kind": "LanguageModel",
            "metadata": {"name": MODEL_NAME, "namespace": "default", "generation": 1},
            "spec": {
                "model": {"source": f"file://{model_dir}", "dtype": dtype, "engine": engine},
                "runtime": {
                    "gpus": 1 if device == "cuda" else 0,
                    "cpu": "1" if device == "cuda" else str(cpus),
                    "memory": "4Gi",
                },
                "autoscaling": {"minReplicas": 1, "maxReplicas": 1},
                "serving": {
                    "maxBatchSize": max_batch,
                    "maxOngoingRequests": 2 * max_batch,
                    **(
                        {}
                        if stream_interval_ms is None
                        else {"streamIntervalMilliseconds": stream_interval_ms}
                    ),
                },
            },
        }
    )
    return decide(lm, {}, ObservedState(now=datetime.now(UTC))).serve_config


async def _one_request(client: Any, url: str, prompt: str, max_tokens: int) -> tuple[float, float, int]:
    """One streamed completion: (latency, time to first non-empty text, completion tokens from usage)."""
    body = {
        "model": MODEL_NAME,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {(await response.aread())[:500]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and any(c.get("text") for c in chunk.get("choices", [])):
                first = time.perf_counter()
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
    finished = time.perf_counter()
    return finished - started, (first or finished) - started, tokens


async def _run_lmops(url: str, prompts: list[str], clients: int, work: Workload) -> RunStats:
    import httpx

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def one_client(index: int) -> list[tuple[float, float, int]]:
            out = []
            for k in range(work.requests_per_client):
                prompt = prompts[(index * work.requests_per_client + k) % len(prompts)]
                out.append(await _one_request(client, url, prompt, work.max_new_tokens))
            return out

        with Stopwatch() as sw:
            per_client = await asyncio.gather(*(one_client(i) for i in range(clients)))
    return run_stats([r for rs in per_client for r in rs], sw.seconds, work)


def run_lmops(url: str, prompts: list[str], clients: int, work: Workload) -> RunStats:
    return asyncio.run(_run_lmops(url, prompts, clients, work))


class LocalServe:
    """The lmops runtime on an in-process local Ray: deploy the document, wait until RUNNING, shut down."""

    def __init__(self, document: dict[str, Any], cpus: int, gpus: int, threads: int) -> None:
        self.document = document
        self.cpus = cpus
        self.gpus = gpus
        self.threads = threads
        self.url = ""

    def __enter__(self) -> LocalServe:
        from lmops_runtime import local

        # Ray sets OMP_NUM_THREADS to an actor's num_cpus when the variable is unset; set it outright so the
        # ModelServer uses as many torch threads as the in-process baseline and ceiling.
        os.environ["OMP_NUM_THREADS"] = str(self.threads)
        start_ray(
            num_cpus=self.cpus,
            num_gpus=self.gpus,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"]}},
        )
        port = local.deploy(self.document, http_port=local.free_port())
        local.wait_ready(timeout_s=600)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def redeploy(self, document: dict[str, Any]) -> None:
        """Apply a changed document in place (a Router config change reconfigures, no replica restarts)."""
        from lmops_runtime import local

        local.deploy(document)
        local.wait_ready(timeout_s=600)

    def worker_torch_threads(self) -> int:
        """Torch threads in a Ray worker of this cluster: confirms the equal-threads setup reached Ray."""
        import ray

        def threads() -> int:
            import torch

            return int(torch.get_num_threads())

        remote: Any = ray.remote(num_cpus=0)(threads)
        return int(ray.get(remote.remote()))

    def __exit__(self, *exc: object) -> None:
        import ray

        from lmops_runtime import local

        local.shutdown()
        ray.shutdown()


# --- the benchmark ------------------------------------------------------------------------------------------


def _summary(trials: list[RunStats]) -> dict[str, Any]:
    """Medians over trials of throughput and of each trial's latency percentiles."""
    return {
        "tokens_per_s": median(t.tokens_per_s for t in trials),
        "p50_latency_s": median(percentile(t.latencies_s, 50) for t in trials),
        "p95_latency_s": median(percentile(t.latencies_s, 95) for t in trials),
        "p50_ttft_s": median(percentile(t.ttfts_s, 50) for t in trials),
        "p95_ttft_s": median(percentile(t.ttfts_s, 95) for t in trials),
        "short_requests": sum(t.short_requests for t in trials),
        "trials": [asdict(t) for t in trials],
    }


def run(
    quick: bool = False,
    device: str = "cpu",
    skip_lmops: bool = False,
    threads: int = 1,
    trials: int | None = None,
) -> Result:
    """All three paths, trials interleaved per concurrency for a and c, then b on a fresh local Ray.

    ``threads``: torch threads in every path (default 1). On a CPU shared with other jobs, a second OpenMP
    thread that is descheduled stalls every parallel region of the first: with both cores busy elsewhere,
    2 threads measured up to 10x slower than 1 here.
    """
    import torch

    if device == "cuda":
        preset_name, work_name, dtype = "gpu", "gpu", "bfloat16"
    else:
        preset_name, work_name = ("quick", "quick") if quick else ("cpu", "full")
        dtype = "float32"
    preset, work = PRESETS[preset_name], WORKLOADS[work_name]
    if trials is not None:
        work = Workload(
            work.prompt_tokens, work.max_new_tokens, work.concurrency, work.requests_per_client, trials
        )
    info = machine_info()
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    cpus = os.cpu_count() or 1
    if device == "cpu":
        torch.set_num_threads(threads)
    max_batch = max(work.concurrency)
    data: dict[str, Any] = {
        "device": device,
        "dtype": dtype,
        "preset": asdict(preset),
        "workload": asdict(work),
        "torch_threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory(prefix="lmops-bench-model-") as tmp:
        model_dir = build_model(Path(tmp) / "model", preset, dtype, device=device)
        model, tokenizer = load(model_dir, device, dtype)
        data["model"] = model_facts(model)
        log(f"serving: model {data['model']['parameters'] / 1e6:.1f} M parameters ({dtype}, {device})")
        bandwidth = measure_bandwidth(device)
        flops = measure_flops(device, dtype)
        data["bandwidth_bytes_s"] = bandwidth
        data["flops"] = flops
        log(f"serving: bandwidth read {bandwidth['read'] / 1e9:.1f} GB/s, matmul {flops / 1e9:.0f} GFLOP/s")
        prompts = make_prompts(max_batch * work.requests_per_client, work.prompt_tokens)
        warm = warm_up(work)
        results = run_in_process(model, tokenizer, prompts, max_batch, work, "serving")
        results.update({"lmops": {}, "lmops_per_token": {}})
        data["load_avg"] = {"start": info.get("load_avg_1m"), "after_a_and_c": round(os.getloadavg()[0], 2)}
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
        if not skip_lmops:
            document = serve_document(model_dir, device=device, dtype=dtype, max_batch=max_batch, cpus=cpus)
            with LocalServe(
                document, cpus=cpus, gpus=1 if device == "cuda" else 0, threads=threads
            ) as served:
                data["ray_worker_torch_threads"] = served.worker_torch_threads()
                run_lmops(served.url, prompts, 1, warm)
                run_lmops(served.url, prompts, max_batch, warm)
                for trial in range(work.trials):
                    for clients in work.concurrency:
                        log(f"serving: trial {trial + 1}/{work.trials}, {clients} clients: lmops over HTTP")
                        results["lmops"].setdefault(clients, []).append(
                            run_lmops(served.url, prompts, clients, work)
                        )
                # b0: the same replica, its Router reconfigured to send every token as its own chunk.
                served.redeploy(
                    serve_document(
                        model_dir,
                        device=device,
                        dtype=dtype,
                        max_batch=max_batch,
                        cpus=cpus,
                        stream_interval_ms=0,
                    )
                )
                for trial in range(work.trials):
                    for clients in work.concurrency:
                        log(f"serving: trial {trial + 1}/{work.trials}, {clients} clients: lmops, per token")
                        results["lmops_per_token"].setdefault(clients, []).append(
                            run_lmops(served.url, prompts, clients, work)
                        )
    data["load_avg"]["end"] = round(os.getloadavg()[0], 2)
    data["paths"] = {
        path: {str(c): _summary(trials) for c, trials in by_c.items()}
        for path, by_c in results.items()
        if by_c
    }
    limits = {}
    for clients in work.concurrency:
        limits[str(clients)] = {
            "bandwidth_tokens_per_s": bandwidth_ceiling(
                clients, data["model"]["decode_bytes"], bandwidth["read"]
            ),
            "compute_tokens_per_s": compute_ceiling(data["model"]["decode_parameters"], flops),
        }
    data["limits"] = limits
    markdown, notes = render(data, info)
    return Result("serving", report_title(device), info, data, markdown, [], notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model and workload, to check the plumbing")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--skip-lmops", action="store_true", help="only the in-process paths a and c")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in every path (CPU)")
    parser.add_argument("--trials", type=int, help="repeated trials (default 3, quick 2)")
    args = parser.parse_args(argv)
    result = run(
        quick=args.quick,
        device=args.device,
        skip_lmops=args.skip_lmops,
        threads=args.threads,
        trials=args.trials,
    )
    if args.device == "cuda":
        result.name = "serving-gpu"
    out = outputs(args.quick)
    result.images = plot(result.data, out.images)
    result.save(out.results)
    print(result.report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
