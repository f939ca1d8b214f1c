#!/usr/bin/env bash
# Builds the lmops wheel (no dependencies) from this checkout: the thin top layer of the runtime and operator
# images. Keyed by the content of the files the wheel is made of, so an unchanged tree reuses it.
# Prints the wheel's path.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

cd "${LMOPS_ROOT}"
sources=(pyproject.toml README.md)
while IFS= read -r f; do sources+=("${f}"); done < <(find operator/lmops_operator runtime/lmops_runtime -type f \
  ! -name '*.pyc' ! -path '*/__pycache__/*' | LC_ALL=C sort)
key="$(for f in "${sources[@]}"; do printf '%s\n' "${f}"; cat "${f}"; done | sha256sum | cut -c1-16)"
dir="${LMOPS_CACHE}/lmops-wheel/${key}"
if ! ls "${dir}"/lmops-*.whl >/dev/null 2>&1; then
  say "building the lmops wheel"
  rm -rf "${dir}" && mkdir -p "${dir}"
  python3 -m pip wheel --quiet --no-deps --wheel-dir "${dir}" . >&2
  rm -rf build
fi
ls "${dir}"/lmops-*.whl
