"""Metadata shared by every child object: namespace, labels and the controller owner reference."""

from __future__ import annotations

from typing import Any

from lmops_operator.api import API_VERSION, KIND, LanguageModel
from lmops_operator.names import common_labels


def owner_reference(lm: LanguageModel) -> dict[str, Any]:
    """Controller reference: the garbage collector deletes the child with its LanguageModel.

    Without a uid (``lmops render`` of a file) the reference cannot exist, so callers get ``{}``-free
    metadata from ``child_metadata`` instead.
    """
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": lm.metadata.name,
        "uid": lm.metadata.uid or "",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(
    lm: LanguageModel, name: str, extra_labels: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "labels": {**common_labels(lm.metadata.name), **(extra_labels or {})},
    }
    if lm.metadata.namespace:
        meta["namespace"] = lm.metadata.namespace
    if lm.metadata.uid:
        meta["ownerReferences"] = [owner_reference(lm)]
    return meta
