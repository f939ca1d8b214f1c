"""A small synchronous REST client over ``kubernetes.client.ApiClient`` for exactly the calls lmops makes.

The generated typed APIs cannot send server-side apply bodies for custom resources cleanly, and the
operator only needs get/list/apply/merge-patch/delete/create on plain dicts, so it speaks REST directly.
Every request goes through ``ApiClient.call_api``; tests wrap that to count writes. Transient failures
(409 conflicts, 429, 5xx) are retried with backoff.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

FIELD_MANAGER = "lmops"
APPLY_PATCH = "application/apply-patch+yaml"
RETRY_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
ATTEMPTS = 5
REQUEST_TIMEOUT_S = 30.0


class KubeError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.status = status
        self.body = body
        reason = body
        try:
            parsed = json.loads(body)
            reason = str(parsed.get("message", body)) if isinstance(parsed, dict) else body
        except ValueError:
            pass
        super().__init__(f"{method} {path}: HTTP {status}: {reason[:500]}")


def api_client_from_kubeconfig(path: str | None = None) -> Any:
    """An ApiClient from a kubeconfig file, or in-cluster credentials when none is given and none exists."""
    configuration = k8s_client.Configuration()
    if path is None:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return k8s_client.ApiClient(configuration)
        except k8s_config.ConfigException:
            pass
    k8s_config.load_kube_config(config_file=path, client_configuration=configuration)  # type: ignore[no-untyped-call]
    return k8s_client.ApiClient(configuration)


class Kube:
    """get/list/apply/patch/delete on dicts; ``None`` for 404 on reads."""

    def __init__(self, api: Any, *, backoff_s: float = 0.2) -> None:
        self.api = api
        self.backoff_s = backoff_s

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        # JSON bodies are serialized by the REST client; an apply patch (YAML, of which JSON is a subset)
        # must arrive as text or it would be sent as a form.
        payload = json.dumps(body) if body is not None and content_type == APPLY_PATCH else body
        for attempt in range(ATTEMPTS):
            _, url, header_params, _, _ = self.api.param_serialize(
                method=method,
                resource_path=path,
                query_params=list(query),
                header_params=headers,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(
                method, url, header_params=header_params, body=payload, _request_timeout=REQUEST_TIMEOUT_S
            )
            data = response.read()
            text = data.decode() if isinstance(data, bytes) else str(data or "")
            if 200 <= response.status < 300:
                parsed = json.loads(text) if text else {}
                return parsed if isinstance(parsed, dict) else {}
            if response.status == 404 and missing_ok:
                return None
            if response.status in RETRY_STATUSES and attempt + 1 < ATTEMPTS:
                time.sleep(self.backoff_s * 2**attempt)
                continue
            raise KubeError(method, path, response.status, text)
        raise AssertionError("unreachable")

    def get(self, path: str) -> dict[str, Any] | None:
        return self._request("GET", path, missing_ok=True)

    def list_with_version(self, path: str, query: Sequence[tuple[str, str]] = ()) -> tuple[list[Any], str]:
        """A collection's items and the resourceVersion to watch from (what an informer starts with)."""
        result = self._request("GET", path, query=query) or {}
        version = str((result.get("metadata") or {}).get("resourceVersion") or "")
        return list(result.get("items") or []), version

    def watch(self, path: str, query: Sequence[tuple[str, str]], timeout_s: float) -> Any:
        """Open a watch stream; the urllib3 response, read line by line (one JSON event each) by the caller,
        who closes it. Not retried: a failed watch is re-listed or re-opened by the informer."""
        _, url, header_params, _, _ = self.api.param_serialize(
            method="GET",
            resource_path=path,
            query_params=[*query, ("watch", "true")],
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api("GET", url, header_params=header_params, _request_timeout=timeout_s)
        if not 200 <= response.status < 300:
            data = response.read()
            raise KubeError("WATCH", path, response.status, data.decode() if isinstance(data, bytes) else "")
        return response.response

    def list(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else []
        result = self._request("GET", path, query=query) or {}
        items = result.get("items") or []
        return [item for item in items if isinstance(item, dict)]

    def apply(self, path: str, obj: Mapping[str, Any], *, subresource: str | None = None) -> dict[str, Any]:
        """Server-side apply as FIELD_MANAGER, forcing ownership of the fields lmops sets."""
        target = f"{path}/{subresource}" if subresource else path
        result = self._request(
            "PATCH",
            target,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            body=dict(obj),
            content_type=APPLY_PATCH,
        )
        return result or {}

    def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        result = self._request(
            "PATCH",
            path,
            query=[("fieldManager", FIELD_MANAGER)],
            body=dict(patch),
            content_type="application/merge-patch+json",
        )
        return result or {}

    def json_patch(self, path: str, ops: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """RFC 6902 patch: edits list items by index (with ``test`` guards), which a merge patch cannot."""
        result = self._request(
            "PATCH",
            path,
            query=[("fieldManager", FIELD_MANAGER)],
            body=[dict(op) for op in ops],
            content_type="application/json-patch+json",
        )
        return result or {}

    def create(self, path: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        result = self._request("POST", path, query=[("fieldManager", FIELD_MANAGER)], body=dict(obj))
        return result or {}

    def delete(self, path: str) -> bool:
        """Delete; False when it was already gone."""
        return self._request("DELETE", path, missing_ok=True) is not None
