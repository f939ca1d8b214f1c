"""What changing a spec field costs, declared on the field itself.

Every leaf of ``spec`` (or a section above it) carries one ``Change`` in its ``json_schema_extra``:

- ``revision``: new model replicas. The field is part of the revision (``stored_as`` says where in the
  ControllerRevision's data); ``planning.revision`` builds the data from these tags and ``lmops rollout
  undo`` inverts it from the same tags.
- ``reconfigure``: the running Router and Serve applications are updated in place (no replica restarts).
- ``cluster``: the Ray cluster's pods change (KubeRay builds a new cluster) or a cluster is added/removed.
- ``policy``: only the operator's decisions change (rollout, analysis, failover timing); nothing restarts.

The CRD generator appends the sentence of ``EXPLAIN`` to the field's description, so ``kubectl explain``
shows the cost next to the field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

CHANGE_KEY = "x-lmops-change"
STORED_AS_KEY = "x-lmops-stored-as"
PER_KEY = "x-lmops-stored-per"


class Change(StrEnum):
    REVISION = "revision"
    RECONFIGURE = "reconfigure"
    CLUSTER = "cluster"
    POLICY = "policy"


EXPLAIN = {
    Change.REVISION: "Change cost: a new revision (new model replicas, rolled out per spec.rollout).",
    Change.RECONFIGURE: "Change cost: a Router reconfigure (the running applications are updated in place).",
    Change.CLUSTER: "Change cost: a cluster change (KubeRay builds a new Ray cluster, or adds or drops one).",
    Change.POLICY: "Change cost: policy only (the operator's decisions change; nothing running restarts).",
}


def cost(
    change: Change,
    stored_as: str | None = None,
    *,
    per: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``json_schema_extra`` of a field: its change cost, where a revision field is stored (a dotted path
    in the revision data, snake_case as the runtime reads it), for a unit change the divisor it is stored
    with (milliseconds stored as seconds: ``per=1000``), and the field's other schema ``extra``."""
    if (stored_as is not None) != (change is Change.REVISION):
        raise ValueError("stored_as is given exactly for revision fields")
    out: dict[str, Any] = {CHANGE_KEY: change.value, **(extra or {})}
    if stored_as is not None:
        out[STORED_AS_KEY] = stored_as
    if per is not None:
        out[PER_KEY] = per
    return out


@dataclass(frozen=True)
class TaggedField:
    """A spec field with its path (snake_case attribute names) and the change cost it or a parent declares."""

    path: tuple[str, ...]
    alias_path: tuple[str, ...]  # camelCase, as on the wire
    info: FieldInfo
    change: Change | None
    stored_as: str | None
    per: int | None

    @property
    def dotted(self) -> str:
        return ".".join(self.alias_path)


def _extra(info: FieldInfo) -> Mapping[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, Mapping) else {}


def submodel(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (itself, optional, or as list items); None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, UnionType, list):
        for arg in get_args(annotation):
            found = submodel(arg)
            if found is not None:
                return found
    return None


def leaves(
    model: type[BaseModel],
    prefix: tuple[str, ...] = (),
    alias_prefix: tuple[str, ...] = (),
    inherited: Change | None = None,
) -> Iterator[TaggedField]:
    """Every leaf field under ``model``, with the change cost declared on it or on its nearest parent."""
    for name, info in model.model_fields.items():
        extra = _extra(info)
        declared = extra.get(CHANGE_KEY)
        change = Change(declared) if declared is not None else inherited
        path, alias_path = (*prefix, name), (*alias_prefix, info.alias or name)
        child = submodel(info.annotation)
        if child is not None:
            yield from leaves(child, path, alias_path, change)
        else:
            yield TaggedField(path, alias_path, info, change, extra.get(STORED_AS_KEY), extra.get(PER_KEY))


def value_at(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


def get_path(data: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted path of nested mappings; None where any part is missing."""
    node: Any = data
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def set_path(data: dict[str, Any], path: tuple[str, ...] | list[str], value: Any) -> None:
    for part in path[:-1]:
        data = data.setdefault(part, {})
    data[path[-1]] = value
