#!/usr/bin/env bash
# The base image every Python image here is built on: a Debian bookworm rootfs from debootstrap with the full
# python3 (python3-minimal lacks http, email, ...), venv, and wget (KubeRay's head probes call wget).
# Prints the image reference; built once per package list and mirror (the key), then reused from the cache.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="python3,python3-venv,wget,procps,ca-certificates"
key="$(cache_key "${SUITE}" "${MIRROR}" "${PACKAGES}" "$0")"
ref="$(image_ref base "${key}")"
if ! have_image "${ref}"; then
  say "debootstrap ${SUITE} (${PACKAGES})"
  mkdir -p "${LMOPS_CACHE}"
  rootfs="$(mktemp -d "${LMOPS_CACHE}/rootfs.XXXXXX")"
  trap 'rm -rf "${rootfs}"' EXIT
  debootstrap --variant=minbase --include="${PACKAGES}" "${SUITE}" "${rootfs}" "${MIRROR}" >&2
  rm -rf "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/log/*.log
  commit_dir base "${key}" "${rootfs}" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 --cmd '["python3"]'
fi
echo "${ref}"
