"""Serving throughput on the vLLM engine: lmops over HTTP vs plain ``generate``, the static batch and vLLM
offline, on the same model files and prompts, in one process run (in the vLLM venv, ``make install-vllm``).

a. baseline: one request at a time through ``model.generate`` (transformers), C client threads queueing;
c. static batch: the same transformers model decoding C prompts as one batch in a bare loop;
v. lmops on vLLM: the Router and one ModelServer with ``spec.model.engine: vllm`` on a local Ray Serve,
   deployed from the operator's own serve config, called over HTTP (``/v1/completions``, streaming) by C
   concurrent clients;
o. vLLM offline: ``vllm.LLM.generate`` on the same C prompts at once (no server, no HTTP): what vLLM gives
   this model at batch size C, the ceiling of path v.

The bars: v >= 8x a, and v >= 0.8x o at 32 clients (the HTTP, Router and Ray overhead under 20%). The model
and workload are bench/serving.py's; its EOS logit row is zeroed and vLLM offline ignores EOS, so every path
generates exactly max_new_tokens per request.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Result, Stopwatch, fmt, log, machine_info, markdown_table, outputs, ratio
from bench.serving import (
    PRESETS,
    WORKLOADS,
    LocalServe,
    RunStats,
    Workload,
    _summary,
    build_model,
    load,
    make_prompts,
    run_lmops,
    serve_document,
)
from bench.serving_baselines import run_in_process, warm_up

BARS = {"v/a": 8.0, "v/o": 0.8}
#: Process roles on the v path, by a word of their command line (Ray names its actors' processes).
ROLES = (
    ("VLLM::Worker", "vLLM model worker"),
    ("EngineCore", "vLLM engine core"),
    ("ServeReplica:lm:", "Router"),
    ("ModelServer", "ModelServer replica"),
    ("ProxyActor", "Serve HTTP proxy"),
)


def cpu_seconds_by_role() -> dict[str, float]:
    """CPU seconds (user + system) so far of this process and its descendants, summed per role; the bench
    process itself (the HTTP clients) and Ray's own daemons count as ``clients and Ray``."""
    import psutil  # type: ignore[import-untyped]

    me = psutil.Process()
    totals: dict[str, float] = {}
    for process in [me, *me.children(recursive=True)]:
        try:
            command, times = " ".join(process.cmdline()), process.cpu_times()
        except psutil.Error:
            continue
        role = next((name for word, name in ROLES if word in command), "clients and Ray")
        totals[role] = totals.get(role, 0.0) + times.user + times.system
    return totals


def cpu_shares(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Each role's CPU use between two readings, in cores (1.0 = one core busy the whole time)."""
    return {role: round((after[role] - before.get(role, 0.0)) / seconds, 2) for role in sorted(after)}


def keep_off_model_cores(threads: int) -> None:
    """vLLM on CPU binds its model worker to its own cores (VLLM_CPU_OMP_THREADS_BIND, the first ``threads``
    here) and expects the rest of the server to stay off them, as a GPU is the model's own. This process, and
    so everything it starts (Ray and its actors, vLLM's engine core, the HTTP clients, the in-process paths),
    runs on the other cores, in every path alike. A machine with no other core leaves it as it is."""
    others = set(os.sched_getaffinity(0)) - set(range(threads))
    if others:
        os.sched_setaffinity(0, others)


def run_offline(llm: Any, prompts: list[str], clients: int, work: Workload) -> RunStats:
    """All C x requests_per_client prompts handed to vLLM at once; latency is the batch's wall time."""
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=work.max_new_tokens, ignore_eos=True)
    batch = [prompts[i % len(prompts)] for i in range(clients * work.requests_per_client)]
    with Stopwatch() as sw:
        results = llm.generate(batch, params, use_tqdm=False)
    generated = [len(r.outputs[0].token_ids) for r in results]
    short = sum(1 for n in generated if n < work.max_new_tokens)
    return RunStats(
        sum(generated), sw.seconds, [sw.seconds] * len(batch), [sw.seconds] * len(batch), short_requests=short
    )


def run(quick: bool = False, threads: int = 1, trials: int | None = None) -> Result:
    import torch

    preset_name, work_name = ("quick", "quick") if quick else ("cpu", "full")
    preset, work = PRESETS[preset_name], WORKLOADS[work_name]
    if trials is not None:
        work = Workload(
            work.prompt_tokens, work.max_new_tokens, work.concurrency, work.requests_per_client, trials
        )
    info = machine_info()
    cpus = os.cpu_count() or 1
    torch.set_num_threads(threads)
    # vLLM's CPU engine: the same number of OpenMP threads as every other path, and a bounded KV cache.
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "0" if threads == 1 else f"0-{threads - 1}"
    keep_off_model_cores(threads)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    max_batch = max(work.concurrency)
    data: dict[str, Any] = {
        "device": "cpu",
        "dtype": "float32",
        "preset": asdict(preset),
        "workload": asdict(work),
    }
    results: dict[str, dict[int, list[RunStats]]] = {"lmops_vllm": {}, "offline": {}}
    with tempfile.TemporaryDirectory(prefix="lmops-bench-model-") as tmp:
        model_dir = build_model(Path(tmp) / "model", preset, "float32", device="cpu")
        prompts = make_prompts(max_batch * work.requests_per_client, work.prompt_tokens)
        model, tokenizer = load(model_dir, "cpu", "float32")
        warm = warm_up(work)
        results.update(run_in_process(model, tokenizer, prompts, max_batch, work, "serving-vllm"))
        del model
        document = serve_document(
            model_dir, device="cpu", dtype="float32", max_batch=max_batch, cpus=cpus, engine="vllm"
        )
        with LocalServe(document, cpus=cpus, gpus=0, threads=threads) as served:
            run_lmops(served.url, prompts, max_batch, warm)
            for trial in range(work.trials):
                for clients in work.concurrency:
                    log(f"serving-vllm: trial {trial + 1}/{work.trials}, {clients} clients: lmops on vLLM")
                    before = cpu_seconds_by_role()
                    stats = run_lmops(served.url, prompts, clients, work)
                    results["lmops_vllm"].setdefault(clients, []).append(stats)
                    if clients == max_batch:  # the last trial's reading is kept
                        data["cpu_cores_v_top"] = cpu_shares(before, cpu_seconds_by_role(), stats.wall_s)
        from vllm import LLM

        llm = LLM(
            model=str(model_dir), dtype="float32", max_model_len=preset.max_position_embeddings,
            max_num_seqs=max_batch, enforce_eager=True, enable_prefix_caching=True, seed=0,
        )  # fmt: skip
        run_offline(llm, prompts, max_batch, warm)
        for trial in range(work.trials):
            for clients in work.concurrency:
                log(f"serving-vllm: trial {trial + 1}/{work.trials}, {clients} clients: vLLM offline")
                results["offline"].setdefault(clients, []).append(run_offline(llm, prompts, clients, work))
        llm.llm_engine.engine_core.shutdown()
    data["paths"] = {path: {str(c): _summary(t) for c, t in by_c.items()} for path, by_c in results.items()}
    data["load_avg_end"] = round(os.getloadavg()[0], 2)
    markdown, notes = render(data)
    return Result("serving-vllm", "Serving throughput on vLLM (CPU)", info, data, markdown, [], notes)


def render(data: dict[str, Any]) -> tuple[str, list[str]]:
    work, paths = data["workload"], data["paths"]
    rows = []
    for clients in work["concurrency"]:
        key = str(clients)
        a, c, v, o = (paths[p][key]["tokens_per_s"] for p in ("baseline", "ceiling", "lmops_vllm", "offline"))
        rows.append([key, fmt(a), fmt(c), fmt(v), fmt(o), fmt(ratio(v, a), 2), fmt(ratio(v, o), 2)])
    table = markdown_table(
        ["clients", "a: generate tok/s", "c: static batch tok/s", "v: lmops on vLLM tok/s",
         "o: vLLM offline tok/s", "v/a", "v/o"],
        rows,
    )  # fmt: skip
    top = str(max(work["concurrency"]))
    v_top = paths["lmops_vllm"][top]["tokens_per_s"]
    verdicts = [
        f"v/a at {top} clients {fmt(ratio(v_top, paths['baseline'][top]['tokens_per_s']), 2)} "
        f"(bar {BARS['v/a']})",
        f"v/o at {top} clients {fmt(ratio(v_top, paths['offline'][top]['tokens_per_s']), 2)} "
        f"(bar {BARS['v/o']})",
    ]
    setup = (
        "The serving section's model (random-weight Llama-style, "
        f"{data['preset']['num_hidden_layers']} layers, hidden {data['preset']['hidden_size']}, "
        f"{data['preset']['num_attention_heads']} heads) and workload: prompt "
        f"{work['prompt_tokens']} tokens, max_new_tokens {work['max_new_tokens']}, greedy, medians of "
        f"{work['trials']} trials, one torch/OpenMP thread in every path. v streams through the Router "
        "with the default 50 ms chunk window. vLLM's model worker has core 0 to itself in paths v and o "
        "(VLLM_CPU_OMP_THREADS_BIND, as vLLM's CPU deployment expects); everything else the benchmark runs, "
        "the Ray processes, vLLM's engine core and the HTTP clients included, stays on the other core."
    )
    body = "\n\n".join([setup, "Throughput (tokens/s, higher is better).", table, "; ".join(verdicts) + "."])
    notes = []
    short = {p: sum(v["short_requests"] for v in paths[p].values()) for p in paths}
    if any(short.values()):
        notes.append(f"requests that returned fewer than max_new_tokens tokens: {short}")
    cores = data.get("cpu_cores_v_top")
    if cores:
        notes.append(
            f"where the CPU went on path v at {top} clients (cores busy, last trial): "
            + ", ".join(f"{role} {value}" for role, value in sorted(cores.items(), key=lambda kv: -kv[1]))
        )
    notes.append(f"1-minute load average at the end: {data['load_avg_end']} (2 cores)")
    return body + "\n", notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model and workload, to check the plumbing")
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads in every path")
    parser.add_argument("--trials", type=int, help="repeated trials (default 3, quick 2)")
    args = parser.parse_args(argv)
    result = run(quick=args.quick, threads=args.threads, trials=args.trials)
    result.save(outputs(args.quick).results)
    print(result.report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
