"""Revisions: a short hash of exactly the spec fields whose change needs new model replicas.

Model fields, batching knobs and per-replica resources make a revision; autoscaling, rollout, failover,
request limits and the runtime image do not (they are reconfigured in place or, for the image, handled as
a Ray cluster upgrade). ``revision_data`` is what a ControllerRevision stores: enough to rebuild the
revision's ``ServerArgs`` and actor resources after the spec has moved on, so rollback needs nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from lmops_operator.api import LanguageModelSpec
from lmops_runtime import config as contract

REVISION_HASH_LENGTH = 10
DEFAULT_NUM_BEAMS = 4


def runtime_model_spec(spec: LanguageModelSpec) -> contract.ModelSpec:
    """The runtime's view of ``spec.model`` (the contract type ModelServer validates)."""
    model = spec.model
    generation = model.generation
    return contract.ModelSpec(
        source=model.source,
        revision=model.revision,
        task=model.task,
        dtype=model.dtype,
        quantization=model.quantization,
        max_sequence_length=model.max_sequence_length,
        trust_remote_code=model.trust_remote_code,
        labels=list(model.labels) if model.labels is not None else None,
        generation=contract.GenerationDefaults(
            strategy=generation.strategy,
            temperature=generation.temperature,
            top_k=generation.top_k,
            top_p=generation.top_p,
            num_beams=generation.num_beams if generation.num_beams is not None else DEFAULT_NUM_BEAMS,
            max_new_tokens=generation.max_new_tokens,
        ),
        engine=model.engine,
    )


def revision_data(spec: LanguageModelSpec) -> dict[str, Any]:
    """The revision's content: runtime model spec, batching and per-replica resources (JSON-ready)."""
    batching = contract.BatchingConfig(
        max_batch_size=spec.serving.max_batch_size,
        batch_wait_timeout_s=spec.serving.batch_wait_timeout_milliseconds / 1000.0,
    )
    model = runtime_model_spec(spec).model_dump(mode="json", exclude_none=True)
    if model["engine"] == "auto":
        # Omitted, so revisions stored before spec.model.engine existed keep their names (no re-rollout).
        del model["engine"]
    return {
        "model": model,
        "batching": batching.model_dump(mode="json"),
        "resources": {
            "cpu": spec.runtime.cpu,
            "memory": spec.runtime.memory,
            "gpus": spec.runtime.gpus,
        },
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
