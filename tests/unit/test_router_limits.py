"""API keys from a file that changes on disk, and the per-caller token bucket (pure, no Ray)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lmops_runtime.router.errors import ApiError
from lmops_runtime.router.limits import ApiKeys, RateLimiter, parse_keys, rate_limited


def test_parse_keys_skips_blanks_and_comments() -> None:
    assert len(parse_keys("a\n\n# comment\n  b  \n")) == 2


def test_keys_are_checked_and_reloaded_when_the_secret_changes(tmp_path: Path) -> None:
    data = tmp_path / "data-1"
    data.mkdir()
    (data / "keys").write_text("k1\n")
    link = tmp_path / "keys"
    link.symlink_to(data / "keys")
    keys = ApiKeys(str(link))
    assert keys.authenticate("Bearer k1", now=0.0) == "k1"
    with pytest.raises(ApiError) as missing:
        keys.authenticate(None, now=0.0)
    assert missing.value.status == 401 and missing.value.body()["error"]["code"] == "invalid_api_key"
    with pytest.raises(ApiError):
        keys.authenticate("Bearer nope", now=0.0)
    # Kubernetes swaps a symlink to a new directory when the Secret changes.
    new = tmp_path / "data-2"
    new.mkdir()
    (new / "keys").write_text("k2\n")
    tmp_link = tmp_path / "keys.tmp"
    tmp_link.symlink_to(new / "keys")
    os.replace(tmp_link, link)
    assert keys.authenticate("Bearer k1", now=0.5) == "k1"  # not re-checked within a second
    assert keys.authenticate("Bearer k2", now=2.0) == "k2"
    with pytest.raises(ApiError):
        keys.authenticate("Bearer k1", now=2.0)


def test_missing_file_keeps_last_good_keys_and_rejects_when_never_loaded(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    never = ApiKeys(str(path))
    with pytest.raises(ApiError):
        never.authenticate("Bearer x", now=0.0)
    path.write_text("x\n")
    keys = ApiKeys(str(path))
    assert keys.authenticate("Bearer x", now=0.0) == "x"
    path.unlink()
    assert keys.authenticate("Bearer x", now=5.0) == "x"


def test_token_bucket_bursts_then_refills() -> None:
    limiter = RateLimiter(per_minute=6)
    assert all(limiter.acquire("a", 0.0) is None for _ in range(6))
    wait = limiter.acquire("a", 0.0)
    assert wait == pytest.approx(10.0)
    assert limiter.acquire("b", 0.0) is None  # callers are independent
    assert limiter.acquire("a", 10.0) is None
    assert limiter.acquire("a", 10.0) is not None


def test_share_divides_capacity_between_router_replicas() -> None:
    limiter = RateLimiter(per_minute=60, share=3)
    assert sum(limiter.acquire("a", 0.0) is None for _ in range(100)) == 20


def test_rate_limited_error_has_retry_after() -> None:
    err = rate_limited(2.2)
    assert err.status == 429 and err.headers == {"Retry-After": "3"}
    assert err.body()["error"]["type"] == "rate_limit_error"
