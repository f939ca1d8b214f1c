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
import queue
import random
import string
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    Result,
    Stopwatch,
    fmt,
    log,
    machine_info,
    markdown_table,
    median,
    outputs,
    percentile,
    ratio,
    start_ray,
)

MODEL_NAME = "bench"


@dataclass(frozen=True)
class ModelPreset:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int = 512


PRESETS: dict[str, ModelPreset] = {
    # ~1 M parameters: --quick only, to check the plumbing in seconds.
    "quick": ModelPreset(128, 384, 4, 4, 2, 256),
    # ~25 M parameters, 100 MB of fp32 weights: large enough that the matmuls, not Python, dominate on CPU.
    "cpu": ModelPreset(512, 1536, 8, 8, 4, 512),
    # ~0.8 B parameters, 1.6 GB in bf16: large enough that a decode step is bound by GPU memory bandwidth.
    "gpu": ModelPreset(2048, 5632, 16, 16, 8, 1024),
}


@dataclass(frozen=True)
class Workload:
    prompt_tokens: int
    max_new_tokens: int
    concurrency: tuple[int, ...]
    requests_per_client: int
    trials: int


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


@dataclass
class RunStats:
    """One trial of one path at one concurrency: tokens returned, wall time, per-request latency and TTFT."""

    tokens: int
    wall_s: float
    latencies_s: list[float] = field(default_factory=list)
    ttfts_s: list[float] = field(default_factory=list)
    short_requests: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s else 0.0


# --- the model ----------------------------------------------------------------------------------------------


def _tokenizer() -> Any:
    """A byte-level tokenizer (every byte one token, no merges): a prompt of N ASCII bytes is N tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: index for index, token in enumerate([*specials, *alphabet])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(specials)
    fast: Any = PreTrainedTokenizerFast
    return fast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def build_model(
    dest: Path, preset: ModelPreset, dtype: str = "float32", seed: int = 0, device: str = "cpu"
) -> Path:
    """Build a random-weight Llama-style causal LM from a config and save it with ``save_pretrained``.

    The EOS row of the output projection is zeroed: with random weights some other logit is (almost surely)
    larger at every step, so greedy decoding never stops early and every request does the same work.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = _tokenizer()
    tokenizer.model_max_length = preset.max_position_embeddings
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=preset.hidden_size,
        intermediate_size=preset.intermediate_size,
        num_hidden_layers=preset.num_hidden_layers,
        num_attention_heads=preset.num_attention_heads,
        num_key_value_heads=preset.num_key_value_heads,
        max_position_embeddings=preset.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    # Initialized where it will run: random init of a large model is slow on a few CPU cores.
    with torch.device(device):
        model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight[tokenizer.eos_token_id].zero_()
    model.to(getattr(torch, dtype))
    generation: Any = GenerationConfig
    model.generation_config = generation(
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def load(path: Path, device: str, dtype: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model: Any = AutoModelForCausalLM.from_pretrained(
        path, dtype=getattr(torch, dtype), attn_implementation="sdpa"
    )
    model.to(device).eval()
    return model, tokenizer


def model_facts(model: Any) -> dict[str, int]:
    """Parameter count and the bytes one decode step reads: every weight except the embedding table."""
    total_params = sum(p.numel() for p in model.parameters())
    total_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    embed = model.get_input_embeddings().weight
    return {
        "parameters": int(total_params),
        "decode_parameters": int(total_params - embed.numel()),
        "weight_bytes": int(total_bytes),
        "decode_bytes": int(total_bytes - embed.numel() * embed.element_size()),
    }


def make_prompts(count: int, length: int, seed: int = 7) -> list[str]:
    """Distinct ASCII prompts of exactly ``length`` bytes (= tokens with the byte-level tokenizer)."""
    rng = random.Random(seed)
    letters = string.ascii_lowercase + "     "
    return ["".join(rng.choice(letters) for _ in range(length)) for _ in range(count)]


# --- limits -------------------------------------------------------------------------------------------------


def bandwidth_ceiling(batch: int, decode_bytes: int, bandwidth_bytes_s: float) -> float:
    """Tokens/s if a decode step only read the weights once (KV cache reads ignored: an upper bound)."""
    return batch * bandwidth_bytes_s / decode_bytes if decode_bytes else 0.0


def compute_ceiling(parameters: int, flops: float) -> float:
    """Tokens/s if each token cost only its ~2 FLOPs per parameter at the measured matmul rate."""
    return flops / (2 * parameters) if parameters else 0.0


def measure_bandwidth(device: str, megabytes: int = 512, repeats: int = 7) -> dict[str, float]:
    """Streaming memory bandwidth, in bytes/s, by two measures (medians of ``repeats``).

    ``read``: ``tensor.sum()`` over a buffer far larger than the caches reads each byte once, the access
    pattern of reading weights during decode. ``copy``: ``dst.copy_(src)``, counted as read + write (STREAM's
    convention). A numpy copy is measured as well on CPU, as a check that torch's figure is not an outlier.
    """
    import numpy as np
    import torch

    elements = megabytes * 2**20 // 4
    src = torch.ones(elements, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    nbytes = elements * 4

    def timed(fn: Any) -> float:
        times = []
        for _ in range(repeats):
            _sync(device)
            with Stopwatch() as sw:
                fn()
                _sync(device)
            times.append(sw.seconds)
        return median(times)

    out = {
        "read": nbytes / timed(lambda: src.sum()),
        "copy": 2 * nbytes / timed(lambda: dst.copy_(src)),
    }
    if device == "cpu":
        a = np.ones(elements, dtype=np.float32)
        b = np.empty_like(a)
        out["numpy_copy"] = 2 * nbytes / timed(lambda: np.copyto(b, a))
    return out


def measure_flops(device: str, dtype: str, size: int = 1024, repeats: int = 7) -> float:
    """Matmul FLOP/s at the model's dtype: the arithmetic limit of batched decode."""
    import torch

    if device == "cuda":
        size = 8192
    a = torch.randn(size, size, device=device).to(getattr(torch, dtype))
    b = torch.randn(size, size, device=device).to(getattr(torch, dtype))
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        _sync(device)
        with Stopwatch() as sw:
            torch.mm(a, b)
            _sync(device)
        times.append(sw.seconds)
    return 2 * size**3 / median(times)


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


# --- (a) baseline -------------------------------------------------------------------------------------------


class _FirstToken:
    """A generate streamer noting when the first generated token appears (its first put is the prompt)."""

    def __init__(self) -> None:
        self.calls = 0
        self.at: float | None = None

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 2 and self.at is None:
            self.at = time.perf_counter()

    def end(self) -> None:
        return None


def run_baseline(model: Any, tokenizer: Any, prompts: list[str], clients: int, work: Workload) -> RunStats:
    """C client threads, each sending its requests one after another, served one at a time by ``generate``.

    The calling thread is the server: it takes requests from a queue and runs ``generate`` on each. Every
    torch call of the in-process paths stays on that one thread, because each thread calling into torch
    gets its own OpenMP team, and idle teams spinning beside a busy one would slow it on 2 cores.
    """
    import torch

    device = model.device
    inbox: queue.Queue[tuple[str, Future[tuple[int, float]]]] = queue.Queue()

    def client(index: int) -> list[tuple[float, float, int]]:
        out = []
        for k in range(work.requests_per_client):
            reply: Future[tuple[int, float]] = Future()
            started = time.perf_counter()
            inbox.put((prompts[(index * work.requests_per_client + k) % len(prompts)], reply))
            generated, first_at = reply.result()
            out.append((time.perf_counter() - started, first_at - started, generated))
        return out

    with Stopwatch() as sw, ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client, i) for i in range(clients)]
        for _ in range(clients * work.requests_per_client):
            prompt, reply = inbox.get()
            ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
            streamer = _FirstToken()
            with torch.inference_mode():
                output = model.generate(
                    ids,
                    max_new_tokens=work.max_new_tokens,
                    do_sample=False,
                    streamer=streamer,
                    pad_token_id=tokenizer.pad_token_id,
                )
            _sync(device.type)
            reply.set_result((int(output.shape[1] - ids.shape[1]), streamer.at or time.perf_counter()))
        results = [r for future in futures for r in future.result()]
    return _stats(results, sw.seconds, work)


def _stats(results: list[tuple[float, float, int]], wall_s: float, work: Workload) -> RunStats:
    return RunStats(
        tokens=sum(r[2] for r in results),
        wall_s=wall_s,
        latencies_s=[r[0] for r in results],
        ttfts_s=[r[1] for r in results],
        short_requests=sum(1 for r in results if r[2] < work.max_new_tokens),
    )


# --- (c) ceiling --------------------------------------------------------------------------------------------


def run_ceiling(model: Any, tokenizer: Any, prompts: list[str], batch: int, work: Workload) -> RunStats:
    """Static batches of ``batch`` equal-length prompts, as many as each client sends requests, one after
    another: prefill, then greedy argmax steps on a KV cache. The same tokens as the other paths generate."""
    import torch
    from transformers import DynamicCache

    device = model.device
    results: list[tuple[float, float, int]] = []
    total = 0.0
    for k in range(work.requests_per_client):
        rows = [prompts[(i * work.requests_per_client + k) % len(prompts)] for i in range(batch)]
        ids = tokenizer(rows, return_tensors="pt").input_ids.to(device)
        if ids.shape != (batch, work.prompt_tokens):
            raise RuntimeError(
                f"prompts tokenized to {tuple(ids.shape)}, expected ({batch}, {work.prompt_tokens})"
            )
        _sync(device.type)
        started = time.perf_counter()
        with torch.inference_mode():
            cache = DynamicCache()
            logits = model(input_ids=ids, past_key_values=cache, use_cache=True).logits
            token = logits[:, -1].argmax(-1, keepdim=True)
            _sync(device.type)
            first = time.perf_counter()
            generated = 1
            while generated < work.max_new_tokens:
                logits = model(input_ids=token, past_key_values=cache, use_cache=True).logits
                token = logits[:, -1].argmax(-1, keepdim=True)
                generated += 1
            token.cpu()
        finished = time.perf_counter()
        total += finished - started
        results += [(finished - started, first - started, generated)] * batch
    return _stats(results, total, work)


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

    A LanguageModel for the saved model goes through the operator's own first-deploy path: ``revision_data``
    and ``revision_hash`` name the revision, ``decide_traffic`` gives it all traffic, and
    ``build_serve_config`` writes the document KubeRay would receive as ``serveConfigV2`` (the Router
    application ``lm`` plus ``rev-<revision>``), which local mode deploys as it is.
    """
    from datetime import UTC, datetime

    from lmops_operator.api import LanguageModelStatus, load_language_model
    from lmops_operator.planning.revision import revision_data, revision_hash
    from lmops_operator.planning.serve_config import build_serve_config
    from lmops_operator.planning.traffic import Controls, TrafficInput, decide_traffic

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
    data = revision_data(lm.spec)
    revision = revision_hash(data)
    decision = decide_traffic(
        TrafficInput(
            spec=lm.spec,
            status=LanguageModelStatus(),
            target_revision=revision,
            health={},
            metrics=None,
            controls=Controls(),
            now=datetime.now(UTC),
        )
    )
    return build_serve_config(lm, decision, {revision: data}, target_revision=revision)


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
    return _stats([r for rs in per_client for r in rs], sw.seconds, work)


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
        results: dict[str, dict[int, list[RunStats]]] = {
            "baseline": {},
            "ceiling": {},
            "lmops": {},
            "lmops_per_token": {},
        }
        # Warm-up (first-call allocations, kernel selection) is not measured.
        warm = Workload(work.prompt_tokens, 4, (1,), 1, 1)
        run_baseline(model, tokenizer, prompts, 1, warm)
        run_ceiling(model, tokenizer, prompts, max_batch, warm)
        for trial in range(work.trials):
            for clients in work.concurrency:
                log(f"serving: trial {trial + 1}/{work.trials}, {clients} clients: baseline, ceiling")
                results["baseline"].setdefault(clients, []).append(
                    run_baseline(model, tokenizer, prompts, clients, work)
                )
                results["ceiling"].setdefault(clients, []).append(
                    run_ceiling(model, tokenizer, prompts, clients, work)
                )
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
    return Result("serving", _title(device), info, data, markdown, [], notes)


def _title(device: str) -> str:
    return "Serving throughput (GPU)" if device == "cuda" else "Serving throughput (CPU)"


LATENCY_ROWS = (
    ("baseline", "a: generate"),
    ("lmops", "b: lmops"),
    ("lmops_per_token", "b0: chunk per token"),
    ("ceiling", "c: static batch"),
)


def render(data: dict[str, Any], info: dict[str, Any]) -> tuple[str, list[str]]:
    """The tables: tokens/s and ratios per concurrency, then latency and TTFT percentiles per path."""
    work = data["workload"]
    paths = data["paths"]
    model = data["model"]
    bw = data["bandwidth_bytes_s"]
    rows = []
    for clients in work["concurrency"]:
        key = str(clients)
        a = paths["baseline"][key]["tokens_per_s"]
        c = paths["ceiling"][key]["tokens_per_s"]
        b = paths["lmops"][key]["tokens_per_s"] if "lmops" in paths else float("nan")
        b0 = paths["lmops_per_token"][key]["tokens_per_s"] if "lmops_per_token" in paths else float("nan")
        lim = data["limits"][key]
        rows.append(
            [
                key,
                fmt(a),
                fmt(b),
                fmt(b0),
                fmt(c),
                fmt(ratio(b, a), 2),
                fmt(ratio(b, c), 2),
                fmt(ratio(b, b0), 2),
                fmt(lim["bandwidth_tokens_per_s"]),
                fmt(lim["compute_tokens_per_s"]),
            ]
        )
    throughput = markdown_table(
        [
            "clients",
            "a: generate tok/s",
            "b: lmops tok/s",
            "b0: chunk per token tok/s",
            "c: static batch tok/s",
            "b/a",
            "b/c",
            "b/b0",
            "bandwidth limit tok/s",
            "compute limit tok/s",
        ],
        rows,
    )
    lat_rows = []
    for path, label in LATENCY_ROWS:
        if path not in paths:
            continue
        for clients in work["concurrency"]:
            s = paths[path][str(clients)]
            lat_rows.append(
                [
                    label,
                    str(clients),
                    fmt(s["p50_latency_s"]),
                    fmt(s["p95_latency_s"]),
                    fmt(s["p50_ttft_s"]),
                    fmt(s["p95_ttft_s"]),
                ]
            )
    latency = markdown_table(
        ["path", "clients", "p50 latency s", "p95 latency s", "p50 TTFT s", "p95 TTFT s"], lat_rows
    )
    notes = []
    short = {p: sum(v["short_requests"] for v in paths[p].values()) for p in paths}
    if any(short.values()):
        notes.append(f"requests that returned fewer than max_new_tokens tokens: {short}")
    if "lmops" not in paths:
        notes.append("path b (lmops over HTTP) was not run")
    loads = data.get("load_avg") or {}
    if loads:
        notes.append(
            "1-minute load average (2 cores): "
            + ", ".join(f"{phase.replace('_', ' ')} {value}" for phase, value in loads.items())
            + "; a and c ran first in the run, b and b0 after them"
        )
    setup = (
        f"Model: random-weight Llama-style, {model['parameters'] / 1e6:.1f} M parameters "
        f"({data['preset']['num_hidden_layers']} layers, hidden {data['preset']['hidden_size']}), "
        f"{data['dtype']} on {data['device']}, {model['decode_bytes'] / 1e6:.0f} MB of weights read per "
        f"decode step. Prompt {work['prompt_tokens']} tokens, max_new_tokens {work['max_new_tokens']}, "
        f"greedy; each client sends {work['requests_per_client']} requests back to back; "
        f"medians of {work['trials']} trials. "
        f"Measured in the same run: streaming read bandwidth {bw['read'] / 1e9:.1f} GB/s "
        f"(copy {bw['copy'] / 1e9:.1f} GB/s"
        + (f", numpy copy {bw['numpy_copy'] / 1e9:.1f} GB/s" if "numpy_copy" in bw else "")
        + f"), matmul {data['flops'] / 1e9:,.0f} GFLOP/s, with {data['torch_threads']} torch thread(s): the "
        f"number every path uses, the ModelServer's too (OMP_NUM_THREADS; a Ray worker reported "
        f"{data.get('ray_worker_torch_threads', 'n/a')}), since on a CPU shared with other "
        "jobs a second OpenMP thread stalled decode more than it helped."
    )
    body = "\n\n".join(
        [
            setup,
            "Throughput (tokens/s, higher is better). b streams with the default 50 ms chunk window; b0 is "
            "the same replica after its Router was reconfigured to send every token as its own chunk "
            "(streamIntervalMilliseconds 0). Limits: bandwidth = clients x bandwidth / weight "
            "bytes; compute = FLOP/s / (2 x parameters outside the embedding table).",
            throughput,
            "Latency of a whole request and time to first token (streamed; for a and c, when the first token "
            "left the model).",
            latency,
        ]
    )
    return body + "\n", notes


def plot(data: dict[str, Any], img_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    work = data["workload"]
    xs = list(work["concurrency"])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    labels = {
        "baseline": "a: model.generate, one at a time",
        "lmops": "b: lmops over HTTP",
        "lmops_per_token": "b0: lmops, a chunk per token",
        "ceiling": "c: static batch",
    }
    for path, label in labels.items():
        if path in data["paths"]:
            ys = [data["paths"][path][str(c)]["tokens_per_s"] for c in xs]
            ax.plot(xs, ys, marker="o", label=label)
    ax.plot(
        xs, [data["limits"][str(c)]["bandwidth_tokens_per_s"] for c in xs], "k--", label="bandwidth limit"
    )
    ax.plot(xs, [data["limits"][str(c)]["compute_tokens_per_s"] for c in xs], "k:", label="compute limit")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("generated tokens / s")
    ax.set_title(f"Serving throughput ({data['device']}, {data['model']['parameters'] / 1e6:.0f} M params)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    img_dir.mkdir(parents=True, exist_ok=True)
    name = f"serving-{data['device']}.png"
    fig.savefig(img_dir / name, dpi=110)
    plt.close(fig)
    return [f"img/{name}"]


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
