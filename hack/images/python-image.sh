#!/usr/bin/env bash
# A Python image in two cached layers: the dependency layer (python-deps.sh, gigabytes for the runtime, keyed
# by its wheels) and the lmops wheel on top (no dependencies, keyed by the source tree), so a code change
# rebuilds only the thin top layer.
# Usage: python-image.sh NAME USER:UID:GID HOME SPEC... -- BUILDAH-CONFIG-ARGS...   Prints the image reference.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

name=$1 account=$2 home=$3
shift 3
specs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do specs+=("$1"); shift; done
shift
here="$(dirname "$0")"
deps="$("${here}/python-deps.sh" "${name}" "${account}" "${home}" "${specs[@]}")"
wheel="$("${here}/lmops-wheel.sh")"
key="$(cache_key "${deps}" "${wheel}" "$@" "$0")"
ref="$(image_ref "${name}" "${key}")"
if ! have_image "${ref}"; then
  c="$(bh from --pull-never "${deps}")"
  trap 'bh rm "${c}" >/dev/null 2>&1 || true' EXIT
  mnt="$(bh mount "${c}")"
  mkdir -p "${mnt}/tmp/lmops"
  cp "${wheel}" "${mnt}/tmp/lmops/"
  chroot_run "${mnt}" /opt/venv/bin/pip install --quiet --no-cache-dir --no-index --no-deps "/tmp/lmops/${wheel##*/}"
  rm -rf "${mnt}/tmp/lmops"
  # Login shells (KubeRay may start Ray through `bash -l`) reset PATH from /etc/profile: keep the venv first.
  echo 'export PATH=/opt/venv/bin:${PATH}' >"${mnt}/etc/profile.d/lmops-venv.sh"
  bh umount "${c}" >/dev/null
  bh config "$@" "${c}"
  bh commit --quiet "${c}" "${ref}" >/dev/null
  bh rm "${c}" >/dev/null
fi
in_use "${deps}"
echo "${ref}"
