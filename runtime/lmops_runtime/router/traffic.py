"""Traffic splitting between revisions: pure functions plus a small circuit breaker per revision.

The split uses one number in [0, 1): random for ordinary calls, a hash of the sticky header for sticky
ones. The hash is SHA-256 (not Python's salted ``hash``) so every Router replica, and every restart, maps a
key to the same revision for as long as the weights stay the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from lmops_runtime.config import RouterConfig

# A revision with this many server faults in a row is treated as unhealthy ...
UNHEALTHY_AFTER_FAILURES = 3
# ... until this many seconds pass since its last failure; then one call probes it (half-open breaker).
UNHEALTHY_COOLDOWN_S = 5.0


def pick_weighted(weights: Mapping[str, int], point: float) -> str | None:
    """The revision whose cumulative-weight interval holds ``point`` (0 <= point < 1), or None if all are 0.

    Revisions are ordered by name so the mapping does not depend on dict order in the user_config.
    """
    active = sorted((rev, w) for rev, w in weights.items() if w > 0)
    total = sum(w for _, w in active)
    if total <= 0:
        return None
    target = point * total
    cumulative = 0.0
    for rev, weight in active:
        cumulative += weight
        if target < cumulative:
            return rev
    return active[-1][0]


def sticky_point(key: str) -> float:
    """A stable point in [0, 1) for a sticky-routing key."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def served_revisions(config: RouterConfig) -> list[str]:
    """Every revision the Router must hold a handle for: weighted ones, the stable and the fallback."""
    names = set(config.weights) | {config.stable}
    if config.fallback:
        names.add(config.fallback)
    return sorted(names)


@dataclass
class _Breaker:
    consecutive_failures: int = 0
    last_failure_at: float = 0.0


@dataclass
class HealthTracker:
    """Marks a revision unhealthy after consecutive server faults; lets one probe through after a cooldown."""

    threshold: int = UNHEALTHY_AFTER_FAILURES
    cooldown_s: float = UNHEALTHY_COOLDOWN_S
    _breakers: dict[str, _Breaker] = field(default_factory=dict)

    def record_success(self, revision: str) -> None:
        self._breakers.pop(revision, None)

    def record_failure(self, revision: str, now: float) -> None:
        breaker = self._breakers.setdefault(revision, _Breaker())
        breaker.consecutive_failures += 1
        breaker.last_failure_at = now

    def failures(self, revision: str) -> int:
        breaker = self._breakers.get(revision)
        return breaker.consecutive_failures if breaker else 0

    def is_healthy(self, revision: str, now: float) -> bool:
        breaker = self._breakers.get(revision)
        if breaker is None or breaker.consecutive_failures < self.threshold:
            return True
        return now - breaker.last_failure_at >= self.cooldown_s

    def forget_except(self, revisions: set[str]) -> None:
        for name in [r for r in self._breakers if r not in revisions]:
            del self._breakers[name]

    def snapshot(self, revisions: list[str], now: float) -> dict[str, dict[str, int | bool]]:
        return {
            rev: {"healthy": self.is_healthy(rev, now), "consecutive_failures": self.failures(rev)}
            for rev in revisions
        }


def choose_revision(config: RouterConfig, point: float, health: HealthTracker, now: float) -> str:
    """The revision that serves a call, steering around unhealthy revisions.

    An unhealthy canary's share goes to the stable revision; an unhealthy stable revision's share goes to
    the warm fallback when one is listed and healthy. With nothing healthy the weighted choice stands, so
    the client gets that revision's real error rather than a made-up one.
    """
    chosen = pick_weighted(config.weights, point) or config.stable
    if health.is_healthy(chosen, now):
        return chosen
    if chosen != config.stable and health.is_healthy(config.stable, now):
        return config.stable
    if config.fallback and config.fallback != chosen and health.is_healthy(config.fallback, now):
        return config.fallback
    return chosen


def retry_revision(config: RouterConfig, failed: str, health: HealthTracker, now: float) -> str | None:
    """Where a call that failed on ``failed`` is retried once: stable, else the fallback, else any other.

    With no other revision the call is retried on ``failed`` itself: the commonest fault is one replica
    dying, and Serve routes the retry to a live replica of the same deployment.
    """
    candidates: list[str] = []
    if failed != config.stable:
        candidates.append(config.stable)
    if config.fallback and config.fallback != failed:
        candidates.append(config.fallback)
    candidates += [r for r in sorted(config.weights) if config.weights[r] > 0 and r not in candidates]
    candidates = [r for r in candidates if r != failed]
    for rev in candidates:
        if health.is_healthy(rev, now):
            return rev
    return candidates[0] if candidates else failed


def pinned_revision(config: RouterConfig, requested: str) -> str:
    """The revision a pinned call (``x-lmops-revision`` request header) must go to.

    Only a revision the Router is configured for may be pinned (any in ``weights``, weight 0 included, plus
    the stable and fallback ones): an unknown name raises ValueError, answered with a 400, rather than a
    handle to an application that may not exist. Health is deliberately ignored: a pin asks for that
    revision's own answer, failures included.
    """
    known = served_revisions(config)
    if requested not in known:
        raise ValueError(
            f"Unknown revision '{requested}' in header x-lmops-revision; this Router serves "
            f"{', '.join(known)}."
        )
    return requested


def no_retry(failed: str) -> str | None:
    """The retry rule of a pinned call: none, so the caller sees that revision's own failure."""
    return None
