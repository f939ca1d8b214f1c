"""kopf credentials from the same source as the operator's REST client (kubeconfig or in-cluster)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf

from lmops_operator.k8s.client import api_client_from_kubeconfig


def connection_info(configuration: Any) -> kopf.ConnectionInfo:
    """kopf's ConnectionInfo from a ``kubernetes.client.Configuration`` (token or client certificate)."""
    token = None
    header = (configuration.api_key or {}).get("authorization") or (configuration.api_key or {}).get(
        "BearerToken"
    )
    if header:
        scheme, _, value = str(header).strip().partition(" ")
        token = value.strip() if scheme.lower() == "bearer" and value else str(header).strip()
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def kubeconfig_login(path: str | None) -> Callable[[], kopf.ConnectionInfo]:
    """Re-read credentials on every login, so a rotated ServiceAccount token is picked up."""

    def login() -> kopf.ConnectionInfo:
        api = api_client_from_kubeconfig(path)
        return connection_info(api.configuration)

    return login
