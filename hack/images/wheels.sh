#!/usr/bin/env bash
# Downloads, on the host, the wheels of everything an image's `pip install` installs besides lmops itself.
# Usage: wheels.sh SPEC... with the specs of the Dockerfile's pip install: ".[extra]" stands for lmops' base
# dependencies plus that extra (read from pyproject.toml), any other spec is taken as it is.
# The image's chroot then installs them offline: pip inside a fresh Debian rootfs has no trust root for the
# package index this machine reaches, and the host's pip already has one.
# Prints the wheel directory (per-user cache, keyed by the requirement list and the Python version).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PYTHON="${PYTHON:-python3}"
reqs="$("${PYTHON}" - "${LMOPS_ROOT}/pyproject.toml" "$@" <<'PY'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = project["optional-dependencies"]

def expand(extra):
    """An extra's requirements, with lmops' own extras it names (lmops[runtime-base]) expanded in place."""
    for req in extras[extra]:
        own = re.fullmatch(r"lmops\[([\w,-]+)\]", req)
        yield from (r for name in own[1].split(",") for r in expand(name)) if own else [req]

for spec in sys.argv[2:]:
    extra = re.fullmatch(r"\.\[([\w-]+)\]", spec)
    print("\n".join(project["dependencies"] + list(expand(extra[1]))) if extra else spec)
PY
)"
pyver="$("${PYTHON}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
dir="${LMOPS_CACHE}/wheels/$(cache_key "${reqs}" "python${pyver}")"
if [ ! -f "${dir}/.complete" ]; then
  say "downloading wheels into ${dir}"
  mkdir -p "${dir}"
  printf '%s\n' "${reqs}" > "${dir}/requirements.txt"
  "${PYTHON}" -m pip download --quiet --only-binary=:all: --dest "${dir}" -r "${dir}/requirements.txt" >&2
  touch "${dir}/.complete"
fi
echo "${dir}"
