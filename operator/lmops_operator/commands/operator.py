"""``lmops operator run``: the operator process the Helm chart's Deployment starts.

Settings come from LMOPS_* variables (see ``lmops_operator.settings``); ports and the kubeconfig from
flags. Liveness is kopf's endpoint (``/healthz``); Prometheus metrics are served on their own port.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from lmops_operator import observability
from lmops_operator.api import LanguageModel
from lmops_operator.handlers import build_registry, operator_settings, runner
from lmops_operator.k8s.cache import Caches
from lmops_operator.k8s.client import Kube, api_client_from_kubeconfig
from lmops_operator.k8s.events import EventSink
from lmops_operator.k8s.login import kubeconfig_login
from lmops_operator.k8s.peering import ensure_peering, peering_allows
from lmops_operator.k8s.reconcile import ReconcileContext
from lmops_operator.k8s.workqueue import WorkQueue
from lmops_operator.metrics_source import MetricsSource, PrometheusSource, RouterStatsSource
from lmops_operator.quality_gate import RouterEvaluator
from lmops_operator.router_client import router_url
from lmops_operator.settings import Settings, SettingsError

log = logging.getLogger(__name__)


def router_evaluator(lm: LanguageModel, api_key: str | None) -> RouterEvaluator:
    """The quality gate evaluates through the model's Service (the Router pins revisions per request)."""
    return RouterEvaluator(router_url(lm), api_key=api_key)


DEFAULT_LIVENESS_PORT = 8080
DEFAULT_METRICS_PORT = 9090
GATE_INTERVAL_S = 0.25  # how often the queue's gate re-reads peering (peers also expire with time)
IO_THREADS_SPARE = 4  # threads beyond one per worker: the event sink, the quality gate, peering
SYNC_TIMEOUT_S = 60.0  # kopf starts after the caches listed everything, or after this (the gate still waits)


@dataclass
class OperatorRun:
    """Everything one operator instance needs; ``run`` blocks until ``stop_flag`` is set."""

    settings: Settings
    kubeconfig: str | None = None
    liveness_endpoint: str | None = None
    metrics_source: MetricsSource | None = None
    api_client: Any = None
    # kopf pauses every peer that shares the highest priority, so replicas pick distinct ones at random.
    priority: int = field(default_factory=lambda: random.randint(1, 2**30))
    # This replica's key in kopf's peering objects: the pod's name where POD_ID is set (kopf's convention),
    # else the host and a random suffix, so two replicas in one process (tests) stay distinct.
    identity: str = field(
        default_factory=lambda: (
            os.environ.get("POD_ID") or f"lmops@{socket.gethostname()}/{uuid.uuid4().hex[:8]}"
        )
    )

    # The running instance's caches (for tests and the benchmark to inspect); None until ``run`` starts.
    caches: Caches | None = field(default=None, init=False, repr=False)

    def context(self, queue: WorkQueue) -> ReconcileContext:
        """The reconcile context, its caches feeding ``queue``."""
        api = self.api_client if self.api_client is not None else api_client_from_kubeconfig(self.kubeconfig)
        source = self.metrics_source
        if source is None:
            source = (
                PrometheusSource(self.settings.prometheus_url)
                if self.settings.prometheus_url
                else RouterStatsSource()
            )
        kube = Kube(api)
        caches = Caches(
            kube,
            self.settings.watch_namespaces,
            queue.add_threadsafe,
            peering_name=self.settings.peering_name,
        )
        return ReconcileContext(
            kube=kube,
            caches=caches,
            settings=self.settings,
            metrics_source=source,
            evaluator_for=router_evaluator,
            events=EventSink(kube),
        )

    def may_act(self, caches: Caches) -> bool:
        """Reconcile only on a fully listed world, and only while peering lets this replica act."""
        if not caches.synced:
            return False
        if self.settings.peering_name is None:
            return True
        return peering_allows(caches.peerings(), self.identity, self.priority, datetime.now(UTC))

    async def _gate(self, caches: Caches, queue: WorkQueue) -> None:
        while True:
            queue.set_open(self.may_act(caches))
            await asyncio.sleep(GATE_INTERVAL_S)

    async def run(
        self,
        stop_flag: threading.Event | asyncio.Event | None = None,
        ready_flag: threading.Event | asyncio.Event | None = None,
    ) -> None:
        queue = WorkQueue()
        # Every API call is a blocking client call in a thread: Python's default pool (cores + 4) would tie
        # the calls in flight to the node's cores (6 on 2 cores, for 16 workers and the event sink).
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=queue.workers + IO_THREADS_SPARE, thread_name_prefix="lmops-io")
        )
        ctx = self.context(queue)
        queue.work = runner(ctx, queue)
        self.caches = ctx.caches
        registry = build_registry(login=kubeconfig_login(self.kubeconfig))
        settings = self.settings
        if settings.peering_name is not None:
            for problem in await asyncio.to_thread(
                ensure_peering, ctx.kube, settings.peering_name, settings.watch_namespaces
            ):
                log.warning("peering object: %s", problem)
        queue.start()
        if ctx.events is not None:
            ctx.events.start()
        ctx.caches.start()
        gate = asyncio.create_task(self._gate(ctx.caches, queue), name="lmops-gate")
        try:
            deadline = time.monotonic() + SYNC_TIMEOUT_S
            while not ctx.caches.synced and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            log.info("caches synced: %s", ctx.caches.sizes(), extra={"synced": ctx.caches.synced})
            await kopf.operator(
                registry=registry,
                settings=operator_settings(ctx),
                clusterwide=settings.clusterwide,
                namespaces=list(settings.watch_namespaces),
                standalone=settings.peering_name is None,
                peering_name=settings.peering_name,
                priority=self.priority,
                identity=self.identity,  # type: ignore[arg-type]  # kopf's Identity is a NewType of str
                liveness_endpoint=self.liveness_endpoint,
                stop_flag=stop_flag,
                ready_flag=ready_flag,
            )
        finally:
            gate.cancel()
            await queue.stop()
            if ctx.events is not None:
                await ctx.events.stop()
            await asyncio.to_thread(ctx.caches.stop)


def _run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"lmops operator: {exc}")
        return 2
    observability.configure_logging(settings.log_level)
    if args.metrics_port:
        observability.serve_metrics(args.metrics_port)
    liveness = f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None
    log.info(
        "starting lmops operator",
        extra={
            "namespaces": ",".join(settings.watch_namespaces) or "*",
            "peering": settings.peering_name or "standalone",
        },
    )
    asyncio.run(OperatorRun(settings, kubeconfig=args.kubeconfig, liveness_endpoint=liveness).run())
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("operator", help="run the Kubernetes operator")
    sub = parser.add_subparsers(dest="operator_command", required=True)
    run = sub.add_parser("run", help="watch LanguageModels and reconcile them (settings from LMOPS_* env)")
    run.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube/config)")
    run.add_argument("--liveness-port", type=int, default=DEFAULT_LIVENESS_PORT, help="0 disables /healthz")
    run.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT, help="0 disables /metrics")
    run.set_defaults(handler=_run)
