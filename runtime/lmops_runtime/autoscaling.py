"""Autoscaling on queue length: Ray Serve's custom autoscaling policy for ``autoscaling.metric: queueLength``.

Serve's default rule scales on ongoing requests per replica, which counts requests a replica is already
running in its batch: a vLLM replica with 32 sequences in flight is busy but not overloaded. This policy adds
a replica only when requests *wait*: in the engines' queues (vLLM's ``num_requests_waiting``; the
transformers engine's sequences beyond its batch, see ``ModelServer.record_autoscaling_stats``) plus the
requests Serve's handles hold because every replica is at ``maxOngoingRequests``. When nothing waits it
removes replicas the ongoing requests do not need at ``targetOngoingRequests`` each. Serve's wrapper applies
the min/max bounds, the upscale/downscale delays and the scale-from-zero fast path to what it returns.

Serve's controller imports the class by path (``config.QUEUE_POLICY_IMPORT_PATH``, which the operator
renders) and pickles this module by value; it imports nothing of lmops, so nothing else travels with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

#: The custom metric each ModelServer replica reports (``record_autoscaling_stats``).
QUEUE_METRIC = "engine_queue_length"


def desired_replicas(
    current: int,
    engine_queues: Iterable[float],
    handle_queued: float,
    ongoing: float,
    target_queue_length: float,
    target_ongoing_requests: float,
) -> float:
    """Replicas wanted for this load (before Serve's bounds and delays); pure, so it is tested directly.

    Up: in proportion to the waiting requests per replica over the target, as Serve's own rule does for
    ongoing requests. Down: only while nothing waits, to the replicas the ongoing requests fill at
    ``target_ongoing_requests`` each. Otherwise (some waiting, within the target): hold.
    """
    if current <= 0:
        return 0.0
    waiting = sum(engine_queues) + handle_queued
    per_replica = waiting / current
    if per_replica > target_queue_length:
        return current * per_replica / target_queue_length
    if waiting == 0:
        return float(min(current, math.ceil(ongoing / target_ongoing_requests)))
    return float(current)


class QueueLengthPolicy:
    """The policy object Serve instantiates once per deployment (``policy_kwargs``) and calls every tick."""

    def __init__(self, target_queue_length: float) -> None:
        self.target_queue_length = float(target_queue_length)

    def __call__(self, ctx: Any) -> tuple[float, dict[str, Any]]:
        """``ctx`` is Serve's ``AutoscalingContext``; only the running replicas' latest reports count."""
        reports = (ctx.aggregated_metrics or {}).get(QUEUE_METRIC, {})
        running = set(ctx.running_replicas)
        queues = [value for replica, value in reports.items() if replica in running]
        desired = desired_replicas(
            ctx.current_num_replicas,
            queues,
            float(ctx.total_queued_requests or 0.0),
            float(ctx.total_num_requests),
            self.target_queue_length,
            float(ctx.config.get_target_ongoing_requests()),
        )
        return desired, {}
