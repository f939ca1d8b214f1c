#!/usr/bin/env bash
# Makes the node's containerd hold every image the cluster runs (hack/images/all.sh builds them, cached),
# each also tagged localhost/lmops/<name>:dev, and writes ${NODE_DIR}/images.env (NAME_IMAGE=reference).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "${LMOPS_ROOT}/hack/images/lib.sh"

"${LMOPS_ROOT}/hack/images/all.sh"
mkdir -p "${NODE_DIR}"
: >"${NODE_DIR}/images.env"
while IFS='=' read -r var ref; do
  name="${ref##*/}" && name="${name%%:*}"
  load_image "${name}" "${ref##*:}"
  echo "${var}_IMAGE=$(image_ref "${name}" "${IMAGE_TAG}")" >>"${NODE_DIR}/images.env"
done <"${LMOPS_CACHE}/images.env"
# Builds containerd held before and no longer needs: untag them (its garbage collector frees their layers).
current="$(cut -d= -f2 "${LMOPS_CACHE}/images.env"; cut -d= -f2 "${NODE_DIR}/images.env")"
for image in $(ctr -n k8s.io images ls -q | grep "^${IMAGE_PREFIX}/"); do
  grep -qxF "${image}" <<<"${current}" || ctr -n k8s.io images rm "${image}" >/dev/null
done
