#!/usr/bin/env bash
# The dependency layer of a Python image: a venv at /opt/venv, on the project's base image, holding the wheels
# of the given pip specs, installed offline, and the image's user. For the runtime this layer is gigabytes
# (torch and its CUDA libraries), so it is built once per wheel set and recipe and reused from the cache.
# Usage: python-deps.sh NAME USER:UID:GID HOME SPEC...   Prints the image reference.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

name=$1 account=$2 home=$3
shift 3
IFS=: read -r user uid gid <<<"${account}"
here="$(dirname "$0")"
base="$("${here}/base.sh")"
wheels="$("${here}/wheels.sh" "$@")"
key="$(cache_key "${base}" "${wheels}" "${account}" "${home}" "$0")"
ref="$(image_ref "${name}-deps" "${key}")"
if ! have_image "${ref}"; then
  say "building ${ref}: $* into /opt/venv"
  c="$(bh from --pull-never "${base}")"
  mnt="$(bh mount "${c}")"
  mkdir -p "${mnt}/tmp/wheels"
  mount --bind -o ro "${wheels}" "${mnt}/tmp/wheels"
  trap 'umount "${mnt}/tmp/wheels" "${mnt}/dev" "${mnt}/proc" 2>/dev/null || true; bh rm "${c}" >/dev/null 2>&1 || true' EXIT
  chroot_run "${mnt}" sh -c "getent group ${gid} >/dev/null || groupadd --gid ${gid} ${user}; \
    useradd --uid ${uid} --gid ${gid} --home-dir ${home} --create-home --shell /bin/bash ${user}"
  chroot_run "${mnt}" python3 -m venv /opt/venv
  chroot_run "${mnt}" /opt/venv/bin/pip install --quiet --no-cache-dir --no-index --find-links /tmp/wheels \
    -r /tmp/wheels/requirements.txt
  umount "${mnt}/tmp/wheels"
  rmdir "${mnt}/tmp/wheels"
  bh umount "${c}" >/dev/null
  bh config --env PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env VIRTUAL_ENV=/opt/venv "${c}"
  bh commit --quiet "${c}" "${ref}" >/dev/null
fi
echo "${ref}"
