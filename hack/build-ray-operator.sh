#!/usr/bin/env bash
# Builds KubeRay's operator (the same module version whose CRDs build-binaries.sh installs) with `go install`,
# and keeps its RBAC manifests beside it: hack/node/ runs it as a Pod under that RBAC.
# Output: <cache>/bin/ray-operator-<key>/ (ray-operator, rbac/), linked from .cache/bin/ray-operator.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

KUBERAY_OPERATOR_VERSION="${KUBERAY_OPERATOR_VERSION:-v1.6.1}"
module="github.com/ray-project/kuberay/ray-operator"
out="${LMOPS_CACHE}/bin/ray-operator-$(cache_key "${KUBERAY_OPERATOR_VERSION}" "$0")"
if [ ! -f "${out}/.complete" ]; then
  command -v go >/dev/null || { echo "go is required to build KubeRay's operator (https://go.dev/dl/)" >&2; exit 1; }
  say "building ${module}@${KUBERAY_OPERATOR_VERSION}"
  mkdir -p "${out}"
  GOBIN="${out}" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "${module}@${KUBERAY_OPERATOR_VERSION}"
  dir="$(go mod download -json "${module}@${KUBERAY_OPERATOR_VERSION}" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  mkdir -p "${out}/rbac"
  cp "${dir}/config/rbac/role.yaml" "${out}/rbac/"
  chmod -R u+w "${out}/rbac"
  echo "${KUBERAY_OPERATOR_VERSION}" > "${out}/.complete"
fi
mkdir -p "${LMOPS_ROOT}/.cache/bin" && ln -sfn "${out}" "${LMOPS_ROOT}/.cache/bin/ray-operator"
echo "${out}"
