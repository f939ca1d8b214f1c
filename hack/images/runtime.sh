#!/usr/bin/env bash
# The runtime image as runtime/Dockerfile describes it, built without Docker: `.[runtime]` (Ray Serve, torch,
# transformers) in a venv for user ray (uid 1000, group users), the lmops wheel on top, the same environment.
# The Dockerfile's base, rayproject/ray, cannot be pulled without a registry; the project's base stands in.
# PyPI's torch is the CUDA build, so the dependency layer holds its nvidia-* libraries (~5 GB): built and
# cached once. Prints the image reference.
set -euo pipefail

# The packages runtime/Dockerfile's `pip install` names for ENGINE=transformers, its default (compared by
# tests/unit/test_image_recipes.py).
PIP_SPECS=(".[runtime]")
exec "$(dirname "$0")/python-image.sh" runtime ray:1000:100 /home/ray "${PIP_SPECS[@]}" -- \
  --user 1000:100 --workingdir /home/ray --cmd '["bash"]' \
  --env PYTHONUNBUFFERED=1 --env LMOPS_CACHE_DIR=/home/ray/.cache/lmops \
  --env HF_HOME=/home/ray/.cache/huggingface --env VLLM_CPU_KVCACHE_SPACE=4 --env RAY_USAGE_STATS_ENABLED=0 \
  --env HOME=/home/ray
