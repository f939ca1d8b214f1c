#!/usr/bin/env bash
# An image holding one static binary and nothing else (the pause image from catatonit, CoreDNS, KubeRay's
# operator). Usage: static-binary.sh NAME BINARY PATH-IN-IMAGE ENTRYPOINT-JSON. Prints the image reference.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

name=$1 binary=$2 target=$3 entrypoint=$4
key="$(cache_key "${binary}" "${target}" "${entrypoint}" "$0")"
ref="$(image_ref "${name}" "${key}")"
if ! have_image "${ref}"; then
  dir="$(mktemp -d)"
  trap 'rm -rf "${dir}"' EXIT
  install -D -m 0755 "${binary}" "${dir}${target}"
  mkdir -p "${dir}/tmp" && chmod 1777 "${dir}/tmp"
  commit_dir "${name}" "${key}" "${dir}" --entrypoint "${entrypoint}" --cmd '[]'
fi
echo "${ref}"
