"""Revisions: a short hash of exactly the spec fields whose change needs new model replicas.

Which fields those are is declared on the fields themselves (``api.changes``: change cost ``revision`` and
where each is stored); ``revision_data`` collects them from the tags, and ``lmops rollout undo`` inverts it
from the same tags. ``revision_data`` is what a ControllerRevision stores: enough to rebuild the revision's
``ServerArgs`` and actor resources after the spec has moved on, so rollback needs nothing else. Its shape
(the runtime's ModelSpec and BatchingConfig, snake_case; per-replica resources) is the runtime contract.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from lmops_operator.api import LanguageModelSpec
from lmops_operator.api.changes import Change, TaggedField, leaves, set_path, value_at
from lmops_runtime import config as contract

REVISION_HASH_LENGTH = 10
# Every leaf of the spec whose change cost is a new revision, with where the revision data holds it.
REVISION_FIELDS: tuple[TaggedField, ...] = tuple(
    f for f in leaves(LanguageModelSpec) if f.change is Change.REVISION
)


def revision_data(spec: LanguageModelSpec) -> dict[str, Any]:
    """The revision's content: the runtime's ModelSpec, BatchingConfig and ReplicaResources (JSON-ready).

    Unset fields are left out, so the runtime contract's defaults apply (``numBeams`` 4, for one).
    """
    sections: dict[str, Any] = {"model": {}, "batching": {}, "resources": {}}
    for tagged in REVISION_FIELDS:
        value = value_at(spec, tagged.path)
        if value is None:
            continue
        if tagged.per is not None:
            value = value / tagged.per
        assert tagged.stored_as is not None  # api.changes.cost requires it for revision fields
        set_path(sections, tagged.stored_as.split("."), list(value) if isinstance(value, list) else value)
    model = contract.ModelSpec.model_validate(sections["model"]).model_dump(mode="json", exclude_none=True)
    if model["engine"] == "auto":
        # Omitted, so revisions stored before spec.model.engine existed keep their names (no re-rollout).
        del model["engine"]
    return {
        "model": model,
        "batching": contract.BatchingConfig.model_validate(sections["batching"]).model_dump(mode="json"),
        "resources": contract.ReplicaResources.model_validate(sections["resources"]).model_dump(mode="json"),
    }


def revision_hash(data: Mapping[str, Any]) -> str:
    """Hash of canonical JSON: key order and formatting never change a revision name."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_HASH_LENGTH]
    # A leading letter (a-p for the first hex digit): an all-digit or "1e5"-like name would be read back
    # as a number by YAML parsers (the Router's weights are keyed by revision in the serve config).
    return chr(ord("a") + int(digest[0], 16)) + digest[1:]


def revision_name(spec: LanguageModelSpec) -> str:
    return revision_hash(revision_data(spec))


def server_args(model_name: str, revision: str, data: Mapping[str, Any]) -> contract.ServerArgs:
    """Rebuild a revision's ServerArgs from its stored data (validated by the contract models).

    A vLLM revision shards its model over all of a replica's GPUs (tensor parallel).
    """
    model = contract.ModelSpec.model_validate(data["model"])
    gpus = int(data.get("resources", {}).get("gpus", 0))
    return contract.ServerArgs(
        model_name=model_name,
        revision=revision,
        model=model,
        batching=contract.BatchingConfig.model_validate(data.get("batching", {})),
        tensor_parallel_size=max(1, gpus) if model.engine == "vllm" else 1,
    )
