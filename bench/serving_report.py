"""The serving benchmark's report: the markdown tables and the plots of one run's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import (
    fmt,
    markdown_table,
    ratio,
)


def report_title(device: str) -> str:
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
