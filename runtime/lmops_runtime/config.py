"""The contract between the operator and the runtime: the Serve applications' names, args and user_configs.

Each model revision is its own Serve application (``rev-<revision>``) and the Router is another (``lm``).
Serve derives an application's code version from ``import_path``, ``runtime_env`` and ``args``; any change
there restarts every replica of that application. Keeping one application per revision means adding or
removing a canary never restarts the stable revision's replicas, and keeping traffic weights in the
Router's ``user_config`` makes every rollout step a ``reconfigure`` call instead of a restart.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ROUTER_APP = "lm"
ROUTER_IMPORT_PATH = "lmops_runtime.app:build_router"
ROUTER_DEPLOYMENT = "Router"
SERVER_IMPORT_PATH = "lmops_runtime.app:build_server"
SERVER_DEPLOYMENT = "ModelServer"
#: Serve's ``autoscaling_config.policy.policy_function`` for ``spec.autoscaling.metric: queueLength``.
QUEUE_POLICY_IMPORT_PATH = "lmops_runtime.autoscaling:QueueLengthPolicy"
PVC_MOUNT_ROOT = "/mnt/models"

Task = Literal["generate", "classify", "embed"]
DType = Literal["auto", "float32", "float16", "bfloat16"]
Quantization = Literal["none", "int8"]
Strategy = Literal["greedy", "sample", "beam"]
#: auto: vLLM for generate where the runtime image has it, else transformers (see vllm_server.select_engine).
Engine = Literal["auto", "vllm", "transformers"]


def state_dir() -> Path:
    """Where local mode keeps its state: the runtime's file (the local Ray) and the operator's (the model)."""
    return Path(os.environ.get("LMOPS_STATE_DIR", Path.home() / ".cache" / "lmops"))


def server_app_name(revision: str) -> str:
    """Name of the Serve application that holds one model revision."""
    return f"rev-{revision}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerationDefaults(_Strict):
    """Defaults for text generation; a request's own parameters override them."""

    strategy: Strategy = "greedy"
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    num_beams: int = 4
    max_new_tokens: int = 128


class ModelSpec(_Strict):
    """What a ModelServer loads.

    ``source`` is one of ``hf://org/name``, ``s3://bucket/prefix``, ``pvc://claim/path`` (mounted
    under ``PVC_MOUNT_ROOT/claim``), ``file:///abs/path`` or ``builtin://tiny`` (random weights, built on
    first use).
    """

    source: str
    revision: str | None = None
    task: Task = "generate"
    dtype: DType = "auto"
    quantization: Quantization = "none"
    max_sequence_length: int | None = None
    trust_remote_code: bool = False
    labels: list[str] | None = None
    generation: GenerationDefaults = Field(default_factory=GenerationDefaults)
    engine: Engine = "auto"


class BatchingConfig(_Strict):
    """How a ModelServer groups concurrent requests into one forward pass."""

    max_batch_size: int = 8
    batch_wait_timeout_s: float = 0.01


class ReplicaResources(_Strict):
    """What one model replica reserves (its pod's requests in a cluster; Ray actor resources)."""

    cpu: str
    memory: str
    gpus: int = 0


class ServerArgs(_Strict):
    """The ``args`` of one revision's Serve application."""

    model_name: str
    revision: str
    model: ModelSpec
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    #: GPUs one vLLM replica shards the model over (its placement group holds one bundle per GPU).
    tensor_parallel_size: int = Field(default=1, ge=1)


class RouterArgs(_Strict):
    """The ``args`` of the Router application: only what never changes for a LanguageModel."""

    model_name: str


class RouterConfig(_Strict):
    """The Router deployment's ``user_config``; every change is a ``reconfigure``, never a restart.

    ``weights`` maps revision to percent of traffic (summing to 100 over revisions with weight); revisions
    listed with weight 0 stay reachable as warm fallbacks. ``stable`` takes retries of failed calls.
    """

    weights: dict[str, int]
    stable: str
    fallback: str | None = None
    sticky_header: str | None = None
    api_keys_file: str | None = None
    rate_limit_per_minute: int | None = None
    max_request_bytes: int = 1_000_000
    max_tokens_limit: int = 4096
    scale_from_zero_timeout_s: float = 120.0
    stream_interval_ms: int = 50
    stream_chunks_per_s: int = 200
