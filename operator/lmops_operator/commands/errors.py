"""Missing prerequisites, said in one line: what is wrong and what to do, never a traceback.

A command reaches Kubernetes through the kubernetes client, whose failures arrive as exceptions from deep
inside it (no kubeconfig, an API server that does not answer, credentials it refuses). Those are the user's
set-up, not a bug in lmops, so ``lmops`` prints ``explain``'s line for them and exits 1; any other exception
keeps its traceback, because that one is a bug to report.
"""

from __future__ import annotations

NO_KUBECONFIG = (
    "no Kubernetes configuration found (--kubeconfig, $KUBECONFIG, ~/.kube/config or in-cluster): "
    "pass --kubeconfig FILE or set KUBECONFIG"
)


def explain(exc: BaseException) -> str | None:
    """The line to print for a missing prerequisite; None for anything else."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    from urllib3.exceptions import HTTPError as TransportError
    from yaml import YAMLError

    if isinstance(exc, ConfigException):
        text = str(exc)
        if "No configuration found" in text or "does not exist" in text or "not found" in text:
            return NO_KUBECONFIG
        return f"invalid Kubernetes configuration: {text}"
    if isinstance(exc, YAMLError):
        return f"cannot parse YAML: {exc}"
    if isinstance(exc, TransportError):
        return (
            f"cannot reach the Kubernetes API server ({type(exc).__name__}: {exc}); "
            "is the cluster running and the kubeconfig's current context the right one?"
        )
    if isinstance(exc, ApiException) and exc.status in (401, 403):
        return (
            f"the Kubernetes API server refused the request ({exc.status} {exc.reason}); "
            "check the kubeconfig's credentials and your RBAC permissions"
        )
    return None
