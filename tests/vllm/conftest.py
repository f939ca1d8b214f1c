"""The vLLM tier: the vLLM engine for real, in the vLLM environment (``.venv-vllm``, made by `make test`).

vLLM and the transformers engine cannot share an environment (their torch pins conflict), so `make test` runs
this folder a second time with the vLLM venv's pytest. The main venv has no vLLM: there the folder is skipped
with that reason. vLLM's CPU KV cache is allocated up front, so the tests keep it at 1 GiB.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

# Read by vLLM in the replica's engine process; set before the session's local Ray starts, which the replica
# workers inherit their environment from.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

if importlib.util.find_spec("vllm") is None:
    pytest.skip(
        "vLLM is not installed here; this tier runs in .venv-vllm (`make test` runs it there)",
        allow_module_level=True,
    )
