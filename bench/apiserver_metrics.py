"""The API server's request counters (``apiserver_request_total``) as the operator benchmark reads them:
which calls, by verb and resource, a run cost, and when the operator has gone quiet.
"""

from __future__ import annotations

import re
import ssl
import time
import urllib.request
from collections import Counter
from typing import Any

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION"})


# Requests the operator never makes (it touches no endpoints or leases): /metrics scrapes (resource ""), the
# API server's own loopback writes (the ``kubernetes`` Service's endpoints, ClusterIP IPAddress objects it
# allocates for each new Service) and the controller-manager's leases.
IGNORED_RESOURCES = frozenset({"", "leases", "endpoints", "endpointslices", "ipaddresses"})


QUIET_S = 4.0


_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$")


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_request_totals(text: str) -> Counter[tuple[str, str]]:
    """``apiserver_request_total`` summed by (verb, resource) from a Prometheus text exposition."""
    totals: Counter[tuple[str, str]] = Counter()
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        totals[(labels.get("verb", ""), labels.get("resource", ""))] += int(float(match["value"]))
    return totals


def operator_requests(
    before: Counter[tuple[str, str]], after: Counter[tuple[str, str]], own: Counter[tuple[str, str]]
) -> Counter[tuple[str, str]]:
    """Requests between two scrapes, less the benchmark's own and the resources no reconcile touches."""
    delta: Counter[tuple[str, str]] = Counter()
    for key in set(before) | set(after):
        if key[1] in IGNORED_RESOURCES:
            continue
        count = after.get(key, 0) - before.get(key, 0) - own.get(key, 0)
        if count > 0:
            delta[key] = count
    return delta


def writes(requests: Counter[tuple[str, str]]) -> Counter[tuple[str, str]]:
    return Counter({key: n for key, n in requests.items() if key[0] in WRITE_VERBS})


class ApiMetrics:
    """Scrapes the API server's /metrics as the admin (client certificate)."""

    def __init__(self, plane: Any) -> None:
        self.url = f"{plane.server}/metrics"
        self.context = ssl.create_default_context(cafile=str(plane.ca_path))
        self.context.load_cert_chain(str(plane.admin_cert_path), str(plane.admin_key_path))

    def totals(self) -> Counter[tuple[str, str]]:
        with urllib.request.urlopen(self.url, context=self.context, timeout=30) as response:
            return parse_request_totals(response.read().decode())

    def watchers(self, resource: str) -> int:
        """Open WATCH requests on ``resource`` (the operator has started watching when this grows)."""
        with urllib.request.urlopen(self.url, context=self.context, timeout=30) as response:
            text = response.read().decode()
        total = 0
        for line in text.splitlines():
            if (
                line.startswith("apiserver_longrunning_requests{")
                and 'verb="WATCH"' in line
                and f'resource="{resource}"' in line
            ):
                total += int(float(line.rsplit(" ", 1)[1]))
        return total


def wait_quiet(metrics: ApiMetrics, timeout_s: float) -> tuple[Counter[tuple[str, str]], bool]:
    """Scrape until no request (ignored resources aside) came for ``QUIET_S`` s: (last scrape, whether it
    went quiet). An operator that keeps polling idle models never goes quiet; that is reported, not hidden."""
    last = metrics.totals()
    quiet_since = time.monotonic()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = metrics.totals()
        if operator_requests(last, now, Counter()):
            quiet_since = time.monotonic()
        last = now
        if time.monotonic() - quiet_since >= QUIET_S:
            return last, True
    return last, False
