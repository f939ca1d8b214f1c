"""The operator's one client of the Router's HTTP contract (``lmops_runtime.contract``).

Canary analysis (``metrics_source``), local mode's drain wait and the quality gate all read the Router
through here: the URL of a model's Router, GET /stats parsed into the typed ``StatsResponse``, and calls
pinned to one revision with the revision header. Nothing else in the operator parses the Router's answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import ValidationError

from lmops_operator.api.models import LanguageModel
from lmops_operator.names import service_name
from lmops_runtime.contract import HTTP_PORT, REVISION_HEADER, STATS_PATH, StatsResponse

TIMEOUT_S = 5.0
# What a Router that is down, restarting or answering garbage raises; callers treat all alike.
UNREADABLE = (httpx.HTTPError, ValidationError, ValueError)


def router_url(lm: LanguageModel, port: int = HTTP_PORT) -> str:
    """The Router behind the model's stable Service (the one users call), by in-cluster DNS."""
    namespace = lm.metadata.namespace or "default"
    return f"http://{service_name(lm.metadata.name)}.{namespace}.svc:{port}"


def stats_url(base_url: str) -> str:
    return base_url.rstrip("/") + STATS_PATH


def parse_stats(response: httpx.Response) -> StatsResponse:
    """The body of a GET /stats answer; raises one of ``UNREADABLE`` for an error status or a bad body."""
    response.raise_for_status()
    return StatsResponse.model_validate_json(response.content)


async def fetch_stats(
    client: httpx.AsyncClient, url: str, headers: Mapping[str, str] | None = None
) -> StatsResponse:
    return parse_stats(await client.get(url, headers=dict(headers or {})))


def read_stats(url: str, timeout_s: float = TIMEOUT_S) -> StatsResponse | None:
    """Blocking form for local mode and the CLI; None when the Router cannot be read."""
    try:
        return parse_stats(httpx.get(url, timeout=timeout_s))
    except UNREADABLE:
        return None


def read_weights(url: str) -> dict[str, int] | None:
    """The traffic weights the Router applies now (what local mode waits for before retiring a revision)."""
    stats = read_stats(url, timeout_s=2.0)
    return None if stats is None else dict(stats.weights)


def post_pinned(
    client: httpx.Client, base_url: str, path: str, body: dict[str, Any], revision: str, api_key: str | None
) -> Any:
    """One call pinned to ``revision``; its JSON body, or RuntimeError with the Router's own message.

    The answer's revision header must name the pinned revision, so a Router that ignored the pin is
    detected rather than trusted.
    """
    headers = {REVISION_HEADER: revision}
    if api_key is not None:
        headers["authorization"] = f"Bearer {api_key}"
    response = client.post(f"{base_url.rstrip('/')}{path}", json=body, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"{path} on revision {revision}: HTTP {response.status_code}: {_error(response)}")
    served = response.headers.get(REVISION_HEADER)
    if served != revision:
        raise RuntimeError(f"the Router cannot pin revision {revision} (answered by {served})")
    return response.json()


def _error(response: httpx.Response) -> str:
    """The message of an OpenAI-format error body, else the start of the raw body."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
