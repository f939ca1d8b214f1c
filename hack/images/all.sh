#!/usr/bin/env bash
# Builds every image the single-node cluster runs (each cached by content; a warm run takes seconds) and writes
# their content-keyed references to <cache>/images.env as NAME=reference lines:
#   PAUSE (catatonit), COREDNS, KUBERAY (KubeRay's operator), OPERATOR, RUNTIME, and CLIENT (Python with the
#   openai client pinned in pyproject's test extra, for calls from inside the cluster).
# Needs root, buildah and debootstrap; without them it says so and builds nothing (the cluster tier then skips).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "${here}/lib.sh"

missing="$("${here}/prerequisites.sh")" || { say "no images built: ${missing}"; exit 0; }
coredns="$("${LMOPS_ROOT}/hack/build-coredns.sh")"
ray_operator="$("${LMOPS_ROOT}/hack/build-ray-operator.sh")"
openai_pin="$(grep -o '"openai==[^"]*"' "${LMOPS_ROOT}/pyproject.toml" | tr -d '"')"
export LMOPS_IMAGES_IN_USE="${LMOPS_CACHE}/images.in-use"
: >"${LMOPS_IMAGES_IN_USE}"
in_use "$("${here}/base.sh")"
# One assignment per image: a failed build stops the script (set -e does not see into a compound string).
pause="$("${here}/static-binary.sh" pause /usr/bin/catatonit /pause '["/pause","-P"]')"
coredns_image="$("${here}/static-binary.sh" coredns "${coredns}/coredns" /coredns '["/coredns"]')"
kuberay="$("${here}/static-binary.sh" kuberay-operator "${ray_operator}/ray-operator" /manager '["/manager"]')"
operator="$("${here}/operator.sh")"
client="$("${here}/python-deps.sh" client ray:1000:100 /home/ray "${openai_pin}")"
runtime="$("${here}/runtime.sh")"
printf '%s\n' "PAUSE=${pause}" "COREDNS=${coredns_image}" "KUBERAY=${kuberay}" "OPERATOR=${operator}" \
  "CLIENT=${client}" "RUNTIME=${runtime}" >"${LMOPS_CACHE}/images.env"
in_use "${pause}" "${coredns_image}" "${kuberay}" "${operator}" "${client}" "${runtime}"
# Builds of older recipes or sources are not needed again: drop them (the runtime's weigh gigabytes).
for image in $(bh images --format '{{.Name}}:{{.Tag}}' | grep "^${IMAGE_PREFIX}/"); do
  grep -qxF "${image}" "${LMOPS_IMAGES_IN_USE}" || bh rmi "${image}" >/dev/null
done
say "images ready (${LMOPS_CACHE}/images.env)"
