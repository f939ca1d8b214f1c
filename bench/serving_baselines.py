"""The serving benchmark's two in-process paths and what they need: the model built and loaded from
files, the prompts, the baseline (one ``model.generate`` at a time), the static-batch ceiling, and the
measured bandwidth and FLOP/s limits.
"""

from __future__ import annotations

import queue
import random
import string
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    Stopwatch,
    log,
    median,
)


@dataclass(frozen=True)
class ModelPreset:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int = 512


@dataclass(frozen=True)
class Workload:
    prompt_tokens: int
    max_new_tokens: int
    concurrency: tuple[int, ...]
    requests_per_client: int
    trials: int


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
    return run_stats(results, sw.seconds, work)


def run_stats(results: list[tuple[float, float, int]], wall_s: float, work: Workload) -> RunStats:
    return RunStats(
        tokens=sum(r[2] for r in results),
        wall_s=wall_s,
        latencies_s=[r[0] for r in results],
        ttfts_s=[r[1] for r in results],
        short_requests=sum(1 for r in results if r[2] < work.max_new_tokens),
    )


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
    return run_stats(results, total, work)


def warm_up(work: Workload) -> Workload:
    """The short, unmeasured run each path makes first (first-call allocations, kernel selection)."""
    return Workload(work.prompt_tokens, 4, (1,), 1, 1)


def run_in_process(
    model: Any, tokenizer: Any, prompts: list[str], max_batch: int, work: Workload, label: str
) -> dict[str, dict[int, list[RunStats]]]:
    """Plain ``generate`` (``baseline``) and the static batch (``ceiling``) at every concurrency, each trial,
    after an unmeasured warm-up (first-call allocations, kernel selection): the in-process paths every
    serving benchmark compares against."""
    results: dict[str, dict[int, list[RunStats]]] = {"baseline": {}, "ceiling": {}}
    warm = warm_up(work)
    run_baseline(model, tokenizer, prompts, 1, warm)
    run_ceiling(model, tokenizer, prompts, max_batch, warm)
    for trial in range(work.trials):
        for clients in work.concurrency:
            log(f"{label}: trial {trial + 1}/{work.trials}, {clients} clients: generate, static batch")
            results["baseline"].setdefault(clients, []).append(
                run_baseline(model, tokenizer, prompts, clients, work)
            )
            results["ceiling"].setdefault(clients, []).append(
                run_ceiling(model, tokenizer, prompts, clients, work)
            )
    return results
