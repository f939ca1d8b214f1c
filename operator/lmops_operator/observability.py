"""The operator's own signals: Prometheus metrics, JSON logs, and the metrics HTTP endpoint.

Liveness is kopf's (``/healthz`` on the liveness endpoint), which fails when kopf's event loop is stuck.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)
RECONCILES = Counter("lmops_operator_reconcile_total", "LanguageModel reconciles run.", registry=REGISTRY)
RECONCILES_SKIPPED = Counter(
    "lmops_operator_reconcile_skipped_total",
    "Reconciles not planned: the model's cached world was what its last reconcile left behind.",
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "lmops_operator_reconcile_errors_total",
    "Reconciles that raised (API errors, retried by kopf).",
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "lmops_operator_reconcile_duration_seconds",
    "Wall time of one reconcile, API calls included.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra`` fields (kopf's object references included) become keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = (
                    value if isinstance(value, str | int | float | bool | type(None)) else repr(value)
                )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def serve_metrics(port: int, addr: str = "0.0.0.0") -> None:
    """Expose REGISTRY on http://addr:port/metrics (a daemon thread)."""
    start_http_server(port, addr=addr, registry=REGISTRY)
