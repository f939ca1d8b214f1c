"""Names, labels and paths of everything the operator creates, kept within Kubernetes' and KubeRay's limits.

Below both ``planning`` (which decides) and ``builders`` (which renders objects): both need the same names.
"""

from __future__ import annotations

import hashlib

from lmops_operator.api import GROUP

# KubeRay names a RayService's clusters <rayservice>-<5 random chars> and their Services
# <cluster>-head-svc; a RayCluster name must stay a 63-character label with room for those suffixes.
MAX_RAY_SERVICE_NAME = 47
MAX_OBJECT_NAME = 253

MODEL_LABEL = f"{GROUP}/model"
REVISION_LABEL = f"{GROUP}/revision"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "lmops"
# KubeRay sets this label to "true" on pods whose Serve proxy is ready to take traffic.
RAY_SERVE_LABEL = "ray.io/serve"
# Where the API-key Secret is mounted in Ray pods (builders) and read by the Router (its serve config).
API_KEYS_MOUNT_PATH = "/etc/lmops/api-keys"


def _shorten(name: str, limit: int) -> str:
    """``name`` if it fits; otherwise a prefix plus a hash of the whole, so distinct names stay distinct."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"


def ray_service_name(model: str) -> str:
    return _shorten(model, MAX_RAY_SERVICE_NAME)


def service_name(model: str) -> str:
    """The stable endpoint users call; it outlives Ray cluster upgrades."""
    return model


def controller_revision_name(model: str, revision: str) -> str:
    return _shorten(f"{model}-{revision}", MAX_OBJECT_NAME)


def endpoint(model: str, namespace: str, port: int) -> str:
    return f"http://{service_name(model)}.{namespace}.svc:{port}/v1"


def common_labels(model: str) -> dict[str, str]:
    return {MODEL_LABEL: model, MANAGED_BY_LABEL: MANAGED_BY}
