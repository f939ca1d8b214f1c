"""The quality gate authenticates to the Router with a key from the model's own API-key Secret."""

from __future__ import annotations

import base64
from typing import Any

from lmops_operator.api.base import SecretKeyRef
from lmops_operator.k8s.client import KubeError
from lmops_operator.k8s.reconcile import gate_api_key


class SecretsOnly:
    """Answers GETs of Secrets from a dict; anything else, or a missing name, like the API server would."""

    def __init__(self, secrets: dict[str, dict[str, str]], forbidden: bool = False) -> None:
        self.secrets = secrets
        self.forbidden = forbidden
        self.paths: list[str] = []

    def get(self, path: str) -> dict[str, Any] | None:
        self.paths.append(path)
        if self.forbidden:
            raise KubeError("GET", path, 403, "secrets is forbidden")
        data = self.secrets.get(path.rsplit("/", 1)[-1])
        return None if data is None else {"data": data}


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_first_non_empty_line_of_the_referenced_key() -> None:
    kube = SecretsOnly({"keys": {"keys.txt": encoded("\n  key-one \nkey-two\n"), "other": encoded("x")}})
    key = gate_api_key(kube, "team-a", SecretKeyRef(name="keys", key="keys.txt"))  # type: ignore[arg-type]
    assert key == "key-one"
    assert kube.paths == ["/api/v1/namespaces/team-a/secrets/keys"]


def test_no_reference_reads_nothing() -> None:
    kube = SecretsOnly({})
    assert gate_api_key(kube, "team-a", None) is None  # type: ignore[arg-type]
    assert kube.paths == []


def test_missing_secret_key_or_forbidden_read_gives_no_key() -> None:
    ref = SecretKeyRef(name="keys", key="keys.txt")
    assert gate_api_key(SecretsOnly({}), "ns", ref) is None  # type: ignore[arg-type]
    assert gate_api_key(SecretsOnly({"keys": {"other": encoded("k")}}), "ns", ref) is None  # type: ignore[arg-type]
    assert gate_api_key(SecretsOnly({"keys": {"keys.txt": encoded("k")}}, forbidden=True), "ns", ref) is None  # type: ignore[arg-type]
