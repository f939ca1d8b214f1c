"""Deciding whether a write is needed, and the minimal JSON merge patch for a status. Pure."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

APPLIED_HASH_ANNOTATION = "lmops.io/applied-hash"


def content_hash(obj: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def with_applied_hash(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` annotated with the hash of itself: a field lmops stops setting changes the hash, so its
    removal is applied even though the live object still satisfies the smaller desired object."""
    out = dict(obj)
    meta = dict(out.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), APPLIED_HASH_ANNOTATION: content_hash(obj)}
    out["metadata"] = meta
    return out


def is_subset(desired: Any, live: Any) -> bool:
    """Every field of ``desired`` has the same value in ``live`` (server defaults in live are ignored)."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            k in live and is_subset(v, live[k]) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(desired) == len(live)
            and all(is_subset(d, v) for d, v in zip(desired, live, strict=True))
        )
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    return bool(desired == live)


def needs_apply(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    """True when the live object is missing, was last applied from a different desired object, or drifted."""
    if live is None:
        return True
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    if annotations.get(APPLIED_HASH_ANNOTATION) != content_hash(desired):
        return True
    # The hash annotation is equal, so ``desired`` without it is what remains to compare (one hash, not two).
    return not is_subset(desired, live)


def merge_patch(live: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 patch turning ``live`` into ``desired`` (removed keys become null); empty when equal."""
    patch: dict[str, Any] = {}
    for key in live.keys() - desired.keys():
        patch[key] = None
    for key, value in desired.items():
        old = live.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            sub = merge_patch(old, value)
            if sub:
                patch[key] = sub
        elif key not in live or old != value:
            patch[key] = value
    return patch
