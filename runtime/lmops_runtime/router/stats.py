"""Per-revision counters: recorded per Router replica, merged in one actor, rendered as JSON and Prometheus.

Counters are totals since the stats actor started (``epoch`` changes when it restarts), so readers such as
the operator's canary analysis compute windowed deltas themselves and detect resets by the epoch.
Each call attempt is recorded on the revision that served it: a canary's fault counts against the canary
even when the retry on the stable revision then succeeds.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

from lmops_runtime.contract import RevisionStats, TokenCounts, latency_summary

LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
# Calls rejected before any revision was chosen (401, 413, 429, 400 ...) are kept under this name.
NO_REVISION = "none"


@dataclass
class RevisionCounters:
    codes: dict[str, int] = field(default_factory=dict)
    # Non-cumulative counts per bucket; the last slot is the +Inf overflow.
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    latency_sum: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def requests(self) -> int:
        return sum(self.codes.values())

    @property
    def errors(self) -> int:
        return sum(n for code, n in self.codes.items() if code.startswith("5"))

    def observe(self, code: int, latency_s: float, prompt_tokens: int, completion_tokens: int) -> None:
        key = str(code)
        self.codes[key] = self.codes.get(key, 0) + 1
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS_S, latency_s)] += 1
        self.latency_sum += latency_s
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens

    def add(self, other: RevisionCounters) -> None:
        for code, n in other.codes.items():
            self.codes[code] = self.codes.get(code, 0) + n
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        self.latency_sum += other.latency_sum
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "codes": dict(self.codes),
            "buckets": list(self.buckets),
            "latency_sum": self.latency_sum,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RevisionCounters:
        return cls(
            codes={str(k): int(v) for k, v in data["codes"].items()},
            buckets=[int(n) for n in data["buckets"]],
            latency_sum=float(data["latency_sum"]),
            prompt_tokens=int(data["prompt_tokens"]),
            completion_tokens=int(data["completion_tokens"]),
        )


Deltas = dict[str, RevisionCounters]


def merge(total: Deltas, delta: Deltas) -> None:
    for rev, counters in delta.items():
        total.setdefault(rev, RevisionCounters()).add(counters)


def deltas_to_wire(deltas: Deltas) -> dict[str, dict[str, Any]]:
    return {rev: c.to_dict() for rev, c in deltas.items()}


def deltas_from_wire(data: dict[str, dict[str, Any]]) -> Deltas:
    return {rev: RevisionCounters.from_dict(c) for rev, c in data.items()}


def merge_health(reports: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """A revision is unhealthy if any live Router replica sees it so; failures are the worst replica's."""
    merged: dict[str, dict[str, Any]] = {}
    for report in reports:
        for rev, state in report.items():
            cur = merged.setdefault(rev, {"healthy": True, "consecutive_failures": 0})
            cur["healthy"] = bool(cur["healthy"] and state["healthy"])
            cur["consecutive_failures"] = max(
                int(cur["consecutive_failures"]), int(state["consecutive_failures"])
            )
    return merged


def revision_stats(counters: RevisionCounters) -> RevisionStats:
    """One revision's entry of GET /stats (health fields are filled in from the merged breaker states)."""
    return RevisionStats(
        requests=counters.requests,
        errors=counters.errors,
        codes=dict(sorted(counters.codes.items())),
        latency_seconds=latency_summary(LATENCY_BUCKETS_S, counters.buckets, counters.latency_sum),
        tokens=TokenCounts(prompt=counters.prompt_tokens, completion=counters.completion_tokens),
    )


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def render_prometheus(totals: Deltas, weights: dict[str, int], health: dict[str, dict[str, Any]]) -> str:
    """Prometheus text exposition (format 0.0.4) of the merged counters and the current routing state."""
    lines = [
        "# HELP lmops_requests_total Call attempts by revision and HTTP status code.",
        "# TYPE lmops_requests_total counter",
    ]
    for rev in sorted(totals):
        for code, n in sorted(totals[rev].codes.items()):
            lines.append(f'lmops_requests_total{{revision="{_label(rev)}",code="{code}"}} {n}')
    lines += [
        "# HELP lmops_request_duration_seconds Call latency by revision.",
        "# TYPE lmops_request_duration_seconds histogram",
    ]
    for rev in sorted(totals):
        c = totals[rev]
        cumulative = 0
        for bound, count in zip([*LATENCY_BUCKETS_S, math.inf], c.buckets, strict=True):
            cumulative += count
            le = "+Inf" if math.isinf(bound) else _fmt(bound)
            lines.append(
                f'lmops_request_duration_seconds_bucket{{revision="{_label(rev)}",le="{le}"}} {cumulative}'
            )
        lines.append(f'lmops_request_duration_seconds_sum{{revision="{_label(rev)}"}} {_fmt(c.latency_sum)}')
        lines.append(f'lmops_request_duration_seconds_count{{revision="{_label(rev)}"}} {c.requests}')
    lines += ["# HELP lmops_tokens_total Tokens by revision and kind.", "# TYPE lmops_tokens_total counter"]
    for rev in sorted(totals):
        c = totals[rev]
        lines.append(f'lmops_tokens_total{{revision="{_label(rev)}",kind="prompt"}} {c.prompt_tokens}')
        lines.append(
            f'lmops_tokens_total{{revision="{_label(rev)}",kind="completion"}} {c.completion_tokens}'
        )
    lines += [
        "# HELP lmops_traffic_weight Percent of traffic routed to a revision.",
        "# TYPE lmops_traffic_weight gauge",
    ]
    for rev, weight in sorted(weights.items()):
        lines.append(f'lmops_traffic_weight{{revision="{_label(rev)}"}} {weight}')
    lines += [
        "# HELP lmops_revision_healthy 1 when no Router replica has opened the revision's circuit breaker.",
        "# TYPE lmops_revision_healthy gauge",
    ]
    for rev, state in sorted(health.items()):
        lines.append(f'lmops_revision_healthy{{revision="{_label(rev)}"}} {1 if state["healthy"] else 0}')
    return "\n".join(lines) + "\n"
