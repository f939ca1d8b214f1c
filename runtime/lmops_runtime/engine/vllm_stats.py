"""Engine metrics of one vLLM replica: what vLLM's scheduler and output processor report, kept for the Router.

vLLM calls a stat logger after every engine step with the scheduler's gauges (requests running and waiting,
KV-cache use) and the step's latencies (time to first token of requests that started, inter-token latency
of every token, time per output token of requests that finished). ``EngineStats`` keeps cumulative sums and
counts (so the Router can report rates and means over any window, like Prometheus histograms' _sum/_count)
and the latest gauges. The names follow vLLM's own Prometheus metrics.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Sum:
    total: float = 0.0
    count: int = 0

    def add(self, values: Iterable[float]) -> None:
        for value in values:
            self.total += value
            self.count += 1


@dataclass
class EngineStats:
    """Cumulative latency sums and the latest scheduler gauges; written by vLLM's loop, read by handles."""

    time_to_first_token: _Sum = field(default_factory=_Sum)
    inter_token_latency: _Sum = field(default_factory=_Sum)
    request_time_per_output_token: _Sum = field(default_factory=_Sum)
    num_requests_running: int = 0
    num_requests_waiting: int = 0
    kv_cache_usage_perc: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, scheduler: Any | None, iteration: Any | None) -> None:
        """One engine step's ``SchedulerStats`` and ``IterationStats`` (either may be None)."""
        with self._lock:
            if scheduler is not None:
                self.num_requests_running = int(scheduler.num_running_reqs)
                self.num_requests_waiting = int(scheduler.num_waiting_reqs)
                self.kv_cache_usage_perc = float(scheduler.kv_cache_usage)
            if iteration is not None:
                self.time_to_first_token.add(iteration.time_to_first_tokens_iter)
                self.inter_token_latency.add(iteration.inter_token_latencies_iter)
                self.request_time_per_output_token.add(
                    finished.mean_time_per_output_token
                    for finished in iteration.finished_requests
                    if finished.num_generation_tokens > 1
                )

    def snapshot(self) -> dict[str, float]:
        """vLLM's metric names (without the ``vllm:`` prefix) to values; latencies as _sum and _count."""
        with self._lock:
            out: dict[str, float] = {
                "num_requests_running": self.num_requests_running,
                "num_requests_waiting": self.num_requests_waiting,
                "kv_cache_usage_perc": self.kv_cache_usage_perc,
            }
            for name, value in (
                ("time_to_first_token_seconds", self.time_to_first_token),
                ("inter_token_latency_seconds", self.inter_token_latency),
                ("request_time_per_output_token_seconds", self.request_time_per_output_token),
            ):
                out[f"{name}_sum"] = value.total
                out[f"{name}_count"] = value.count
            return out


def stat_logger_factory(stats: EngineStats) -> Callable[[Any, int], Any]:
    """A vLLM per-engine stat logger factory that records into ``stats`` (vLLM imported lazily)."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class _Recorder(StatLoggerBase):  # type: ignore[misc]
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            self._stats = stats

        def record(
            self,
            scheduler_stats: Any,
            iteration_stats: Any,
            mm_cache_stats: Any = None,
            engine_idx: int = 0,
        ) -> None:
            self._stats.record(scheduler_stats, iteration_stats)

        def log_engine_initialized(self) -> None:
            return None

    return _Recorder
