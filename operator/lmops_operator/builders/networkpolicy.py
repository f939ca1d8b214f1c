"""NetworkPolicy for the model's Ray pods: only the serving, dashboard and metrics ports are reachable from
other pods; GCS, the Ray client port and the object/worker ports stay inside the model's own cluster.

The Ray client port and GCS let anyone who can reach them run code on the cluster, so they are closed to
everything but the model's own pods. KubeRay submits the serve config through the dashboard (8265, behind
Ray's token auth), Prometheus scrapes 8080, users come through the Service on 8000.
"""

from __future__ import annotations

from typing import Any

from lmops_operator.api import LanguageModel
from lmops_operator.builders.meta import child_metadata
from lmops_operator.names import MODEL_LABEL, ray_service_name
from lmops_runtime.contract import HTTP_PORT

DASHBOARD_PORT = 8265
RAY_METRICS_PORT = 8080
OPEN_PORTS = (HTTP_PORT, DASHBOARD_PORT, RAY_METRICS_PORT)


def build_network_policy(lm: LanguageModel) -> dict[str, Any]:
    pods = {"matchLabels": {MODEL_LABEL: lm.metadata.name}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_metadata(lm, f"{ray_service_name(lm.metadata.name)}-ray"),
        "spec": {
            "podSelector": pods,
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": pods}]},
                {"ports": [{"port": port, "protocol": "TCP"} for port in OPEN_PORTS]},
            ],
        },
    }
