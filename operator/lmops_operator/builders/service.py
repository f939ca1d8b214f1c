"""``Service <name>``: the endpoint users call, stable across Ray cluster upgrades.

It selects pods by model label plus KubeRay's ``ray.io/serve=true`` (set only while a pod's Serve proxy is
ready), not by cluster name, so traffic follows KubeRay from the old cluster to the new one.
"""

from __future__ import annotations

from typing import Any

from lmops_operator.api import LanguageModel
from lmops_operator.builders.meta import child_metadata
from lmops_operator.names import MODEL_LABEL, RAY_SERVE_LABEL, service_name
from lmops_runtime.contract import HTTP_PORT


def build_service(lm: LanguageModel, selector: dict[str, str] | None = None) -> dict[str, Any]:
    """``selector`` overrides the primary cluster's pods (standby failover, ``planning.standby``)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(lm, service_name(lm.metadata.name)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector or {MODEL_LABEL: lm.metadata.name, RAY_SERVE_LABEL: "true"},
            "ports": [
                {
                    "name": "http",
                    "port": HTTP_PORT,
                    "targetPort": HTTP_PORT,
                    "protocol": "TCP",
                    "appProtocol": "http",
                }
            ],
        },
    }
