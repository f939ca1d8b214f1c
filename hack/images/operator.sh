#!/usr/bin/env bash
# The operator image as operator/Dockerfile describes it, built without Docker: `.[operator]` and
# prometheus-client in a venv, the lmops wheel on top, run as uid 65532 with `lmops operator run`.
# Prints the image reference.
set -euo pipefail

# The packages operator/Dockerfile's `pip install` names (tests/unit/test_image_recipes.py compares them).
PIP_SPECS=(".[operator]" prometheus-client)
exec "$(dirname "$0")/python-image.sh" operator lmops:65532:65532 /home/lmops "${PIP_SPECS[@]}" -- \
  --user 65532:65532 --workingdir /tmp --entrypoint '[]' --cmd '["lmops","operator","run"]' \
  --env PYTHONUNBUFFERED=1 --env PYTHONDONTWRITEBYTECODE=1 --env PIP_NO_CACHE_DIR=1 --env PIP_DISABLE_PIP_VERSION_CHECK=1
