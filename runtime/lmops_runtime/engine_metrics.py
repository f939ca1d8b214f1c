"""Engine metrics per revision (vLLM's TTFT, time per output token, queue length, KV-cache use).

Each vLLM ModelServer replica pushes its engine's snapshot (``EngineStats.snapshot``) every
``PUSH_INTERVAL_S`` to one detached actor per model; the Router reads the per-revision sums for ``/stats`` and
``/metrics``. A push, not a pull: a Serve handle reaches one replica per call, and the sums must cover all.
Latency sums and counts stay monotonic when a replica goes away (its last report is folded into the
revision's retired totals), so readers can compute windowed means from deltas like Prometheus does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import ray

NAMESPACE = "lmops"
PUSH_INTERVAL_S = 2.0
#: A replica that has not pushed for this long is gone: its gauges stop counting, its totals are retired.
REPLICA_LIVE_S = 15.0
#: Gauges are summed over live replicas, except KV-cache use, which is their mean (a fraction per replica).
GAUGES = ("num_requests_running", "num_requests_waiting")
MEAN_GAUGES = ("kv_cache_usage_perc",)
#: Latency summaries, each reported as ``<name>_sum`` and ``<name>_count`` (vLLM's metric names).
SUMMARIES = (
    "time_to_first_token_seconds",
    "inter_token_latency_seconds",
    "request_time_per_output_token_seconds",
)
_HELP = {
    "time_to_first_token_seconds": "Time to first token (vLLM's engine measure).",
    "inter_token_latency_seconds": "Time between consecutive output tokens.",
    "request_time_per_output_token_seconds": "Mean time per output token of each finished request.",
    "num_requests_running": "Requests in the engines' running batches.",
    "num_requests_waiting": "Requests queued in the engines, waiting for a batch slot (queue length).",
    "kv_cache_usage_perc": "Fraction of KV-cache blocks in use, mean over the revision's replicas.",
}


def actor_name(model_name: str) -> str:
    return f"lmops-engine-metrics-{model_name}"


class EngineMetricsStore:
    """Latest report per (revision, replica); per-revision sums over live replicas plus retired totals."""

    def __init__(self) -> None:
        self.reports: dict[tuple[str, str], tuple[float, dict[str, float]]] = {}
        self.retired: dict[str, dict[str, float]] = {}

    def push(self, revision: str, replica_id: str, snapshot: dict[str, float]) -> None:
        self.reports[(revision, replica_id)] = (time.monotonic(), dict(snapshot))

    def _retire_stale(self, now: float) -> None:
        for key in [k for k, (at, _) in self.reports.items() if now - at > REPLICA_LIVE_S]:
            _, snapshot = self.reports.pop(key)
            retired = self.retired.setdefault(key[0], {})
            for name in SUMMARIES:
                for suffix in ("_sum", "_count"):
                    retired[name + suffix] = retired.get(name + suffix, 0.0) + snapshot.get(
                        name + suffix, 0.0
                    )

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Per revision: summed gauges, mean KV-cache use, latency _sum/_count, and ``replicas`` reporting."""
        self._retire_stale(time.monotonic())
        out: dict[str, dict[str, float]] = {rev: dict(totals) for rev, totals in self.retired.items()}
        live: dict[str, list[dict[str, float]]] = {}
        for (revision, _), (_, snapshot) in self.reports.items():
            live.setdefault(revision, []).append(snapshot)
        for revision, snapshots in live.items():
            merged = out.setdefault(revision, {})
            for name in SUMMARIES:
                for suffix in ("_sum", "_count"):
                    key = name + suffix
                    merged[key] = merged.get(key, 0.0) + sum(s.get(key, 0.0) for s in snapshots)
            for name in GAUGES:
                merged[name] = sum(s.get(name, 0.0) for s in snapshots)
            for name in MEAN_GAUGES:
                merged[name] = sum(s.get(name, 0.0) for s in snapshots) / len(snapshots)
            merged["replicas"] = len(snapshots)
        return out


def get_or_create(model_name: str) -> Any:
    """The model's engine metrics actor, creating it on first use (concurrent creators get the same one)."""
    remote_cls = ray.remote(num_cpus=0, max_restarts=-1)(EngineMetricsStore)
    return remote_cls.options(
        name=actor_name(model_name), namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote()


async def read(model_name: str) -> dict[str, dict[str, float]]:
    """Per-revision engine metrics, or nothing when no vLLM replica of the model ever reported."""
    try:
        handle = ray.get_actor(actor_name(model_name), namespace=NAMESPACE)
    except ValueError:
        return {}
    snapshot: dict[str, dict[str, float]] = await handle.snapshot.remote()
    return snapshot


class EngineMetricsPusher:
    """Pushes one replica's engine snapshot to the model's store every PUSH_INTERVAL_S (started lazily:
    the replica's constructor runs before its event loop serves anything)."""

    def __init__(self, model_name: str, revision: str, source: Callable[[], dict[str, float]]) -> None:
        from ray import serve

        self._model_name = model_name
        self._revision = revision
        self._source = source
        context = serve.get_replica_context() if ray.is_initialized() else None
        self._replica_id = context.replica_id.unique_id if context else uuid.uuid4().hex
        self._task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        store: Any = None
        while True:
            with contextlib.suppress(Exception):
                if store is None:
                    store = get_or_create(self._model_name)
                await store.push.remote(self._revision, self._replica_id, self._source())
            await asyncio.sleep(PUSH_INTERVAL_S)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _fmt(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def render_prometheus(engine: Mapping[str, Mapping[str, float]]) -> str:
    """vLLM-named metric families labelled by revision (summaries as _sum/_count, gauges as they are)."""
    lines: list[str] = []
    for name in SUMMARIES:
        lines += [f"# HELP vllm:{name} {_HELP[name]}", f"# TYPE vllm:{name} summary"]
        for revision, values in sorted(engine.items()):
            for suffix in ("_sum", "_count"):
                value = values.get(name + suffix, 0.0)
                lines.append(f'vllm:{name}{suffix}{{revision="{revision}"}} {_fmt(value)}')
    for name in (*GAUGES, *MEAN_GAUGES):
        lines += [f"# HELP vllm:{name} {_HELP[name]}", f"# TYPE vllm:{name} gauge"]
        for revision, values in sorted(engine.items()):
            if name in values:
                lines.append(f'vllm:{name}{{revision="{revision}"}} {_fmt(values[name])}')
    return "\n".join(lines) + "\n" if lines else ""
