"""What exists of one model's children, as one read-only value the planner and the applier look at. Pure.

The operator fills it from its watch caches (``k8s.cache``), a test from plain dicts: decisions never ask the
API server, so the same inputs give the same decisions, and a model at rest costs no request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def owned_by(obj: Mapping[str, Any], uid: str | None) -> bool:
    """``obj`` names the object with ``uid`` as its controller."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


@dataclass(frozen=True)
class ObservedChildren:
    """Objects by (kind, name): every child labelled with the model, and the RayServices at the model's
    names whoever owns them (so a foreign one is seen, not overwritten). Absent means known not to exist."""

    objects: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)

    def get(self, kind: str, name: str) -> Mapping[str, Any] | None:
        return self.objects.get((kind, name))

    def of_kind(self, kind: str, owner_uid: str | None = None) -> list[Mapping[str, Any]]:
        """Every object of ``kind`` by name, only those controlled by ``owner_uid`` when it is given."""
        return [
            obj
            for (k, _), obj in sorted(self.objects.items())
            if k == kind and (owner_uid is None or owned_by(obj, owner_uid))
        ]
