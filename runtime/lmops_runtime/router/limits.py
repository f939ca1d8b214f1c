"""API keys from a mounted Secret file and per-key token-bucket rate limits.

Kubernetes updates a mounted Secret by swapping a symlink, so the key file is re-read whenever its
resolved inode, size or mtime changes (checked at most once a second to keep the hot path cheap). Keys are
kept as SHA-256 digests: membership of a digest reveals nothing through timing about a near-miss key.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field

from lmops_runtime.router.errors import ApiError

STAT_INTERVAL_S = 1.0
_MAX_IDLE_BUCKETS = 10_000


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def parse_keys(text: str) -> frozenset[bytes]:
    """One key per line; blank lines and ``#`` comments are skipped."""
    keys = (line.strip() for line in text.splitlines())
    return frozenset(_digest(k) for k in keys if k and not k.startswith("#"))


@dataclass
class ApiKeys:
    """The accepted keys, reloaded when the file changes; the last good set survives a half-swapped mount."""

    path: str
    _digests: frozenset[bytes] = frozenset()
    _signature: tuple[int, int, int] | None = None
    _checked_at: float = -math.inf
    loaded: bool = False

    def refresh(self, now: float) -> None:
        if now - self._checked_at < STAT_INTERVAL_S:
            return
        self._checked_at = now
        try:
            st = os.stat(self.path)
            signature = (st.st_ino, st.st_size, st.st_mtime_ns)
            if signature == self._signature:
                return
            with open(self.path, encoding="utf-8") as handle:
                self._digests = parse_keys(handle.read())
            self._signature = signature
            self.loaded = True
        except OSError:
            return

    def authenticate(self, authorization: str | None, now: float) -> str:
        """The caller's key, or an ApiError 401 in OpenAI's words."""
        self.refresh(now)
        if not authorization or not authorization.lower().startswith("bearer "):
            raise ApiError(
                401,
                "Missing API key: send 'Authorization: Bearer <key>'.",
                type_="invalid_request_error",
                code="invalid_api_key",
            )
        key = authorization[7:].strip()
        if _digest(key) not in self._digests:
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
        return key


@dataclass
class _Bucket:
    tokens: float
    updated_at: float


@dataclass
class RateLimiter:
    """Token bucket per caller: ``per_minute`` calls of burst, refilled at ``per_minute / 60`` per second.

    ``share`` divides the limit between Router replicas (each sees about 1/share of the calls), so that the
    cluster-wide rate stays near the configured one without a shared store on the request path.
    """

    per_minute: int
    share: int = 1
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def capacity(self) -> float:
        return max(1.0, self.per_minute / max(1, self.share))

    def acquire(self, caller: str, now: float) -> float | None:
        """None when the call may proceed, else the seconds until a token is available."""
        capacity = self.capacity()
        rate = capacity / 60.0
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= _MAX_IDLE_BUCKETS:
                self._prune(now, rate, capacity)
            bucket = self._buckets[caller] = _Bucket(tokens=capacity, updated_at=now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated_at) * rate)
        bucket.updated_at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / rate

    def _prune(self, now: float, rate: float, capacity: float) -> None:
        """Forget callers whose bucket has refilled: they would start full anyway."""
        full = [c for c, b in self._buckets.items() if b.tokens + (now - b.updated_at) * rate >= capacity]
        for caller in full:
            del self._buckets[caller]


def rate_limited(retry_after_s: float) -> ApiError:
    seconds = max(1, math.ceil(retry_after_s))
    return ApiError(
        429,
        f"Rate limit reached; retry after {seconds} s.",
        type_="rate_limit_error",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(seconds)},
    )
