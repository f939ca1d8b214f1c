"""``lmops operator run``: the operator process the Helm chart's Deployment starts.

Settings come from LMOPS_* variables (see ``lmops_operator.settings``); ports and the kubeconfig from
flags. Liveness is kopf's endpoint (``/healthz``); Prometheus metrics are served on their own port.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import threading
from dataclasses import dataclass, field
from typing import Any

import kopf

from lmops_operator import observability
from lmops_operator.api import LanguageModel
from lmops_operator.handlers import build_registry, operator_settings
from lmops_operator.k8s.client import Kube, api_client_from_kubeconfig
from lmops_operator.k8s.login import kubeconfig_login
from lmops_operator.k8s.peering import ensure_peering
from lmops_operator.k8s.reconcile import ReconcileContext
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

    def context(self) -> ReconcileContext:
        api = self.api_client if self.api_client is not None else api_client_from_kubeconfig(self.kubeconfig)
        source = self.metrics_source
        if source is None:
            source = (
                PrometheusSource(self.settings.prometheus_url)
                if self.settings.prometheus_url
                else RouterStatsSource()
            )
        return ReconcileContext(
            kube=Kube(api), settings=self.settings, metrics_source=source, evaluator_for=router_evaluator
        )

    async def run(
        self,
        stop_flag: threading.Event | asyncio.Event | None = None,
        ready_flag: threading.Event | asyncio.Event | None = None,
    ) -> None:
        ctx = self.context()
        registry = build_registry(ctx, login=kubeconfig_login(self.kubeconfig))
        settings = self.settings
        if settings.peering_name is not None:
            for problem in await asyncio.to_thread(
                ensure_peering, ctx.kube, settings.peering_name, settings.watch_namespaces
            ):
                log.warning("peering object: %s", problem)
        await kopf.operator(
            registry=registry,
            settings=operator_settings(ctx),
            clusterwide=settings.clusterwide,
            namespaces=list(settings.watch_namespaces),
            standalone=settings.peering_name is None,
            peering_name=settings.peering_name,
            priority=self.priority,
            liveness_endpoint=self.liveness_endpoint,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )


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
