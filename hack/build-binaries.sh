#!/usr/bin/env bash
# Builds the pinned Kubernetes binaries the test suite runs from Go modules, the way envtest ships them:
# kube-apiserver, kube-controller-manager, kubectl, etcd and helm for the control-plane tier, and kubelet,
# kube-scheduler and kube-proxy for the single-node cluster (hack/node/); fetches KubeRay's CRDs from its module.
# Output goes to the per-user cache (<cache>/bin/<pin-hash>/, linked from .cache/bin/current): a fresh clone
# reuses it, and a later run with the same pins does nothing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.8}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KUBERAY_VERSION="${KUBERAY_VERSION:-v1.7.0}"
# The Go module proxy reachable here answers 403 "not available" for the v1.7.0 zip; v1.6.1 is the newest it
# serves. Its RayService/RayCluster schemas hold every field lmops writes (serveConfigV2, rayClusterConfig,
# upgradeStrategy, gcsFaultToleranceOptions.redisAddress); v1.7.0 only adds fields lmops does not use.
KUBERAY_FALLBACK_VERSION="${KUBERAY_FALLBACK_VERSION:-v1.6.1}"

root="${LMOPS_ROOT}"
pins="k8s=${KUBERNETES_VERSION} etcd=${ETCD_VERSION} helm=${HELM_VERSION} kuberay=${KUBERAY_VERSION}/${KUBERAY_FALLBACK_VERSION}"
key="$(cache_key "${pins}" "$0")"
out="${LMOPS_CACHE}/bin/${key}"
link() { mkdir -p "${root}/.cache/bin" && ln -sfn "${out}" "${root}/.cache/bin/current"; }
if [ -f "${out}/.complete" ]; then
  link
  echo "Kubernetes binaries up to date: ${out}"
  exit 0
fi
command -v go >/dev/null || { echo "go is required to build the control plane (https://go.dev/dl/)" >&2; exit 1; }
mkdir -p "${out}"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

# Kubernetes: the main module maps every k8s.io/* staging module to ./staging; a consumer must map them to v0.X.Y.
staging_version="v0${KUBERNETES_VERSION#v1}"
k8s_mod_file="$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
mkdir -p "${work}/k8s" && cd "${work}/k8s"
go mod init lmops.local/controlplane >/dev/null 2>&1
for mod in $(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "${k8s_mod_file}"); do
  go mod edit -replace "${mod}=${mod}@${staging_version}"
done
k8s_cmds=(kube-apiserver kube-controller-manager kubectl kubelet kube-scheduler kube-proxy)
go get $(printf "k8s.io/kubernetes/cmd/%s@${KUBERNETES_VERSION} " "${k8s_cmds[@]}") >/dev/null
# The version the binaries report (kubectl version, the node's kubeletVersion, Helm's kubeVersion checks): what
# Kubernetes' own build stamps; without it they say v0.0.0-master. Link-time only, so the Go cache is shared.
minor="${KUBERNETES_VERSION#v1.}" && minor="${minor%%.*}"
version_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_ldflags+=" -X ${pkg}.gitVersion=${KUBERNETES_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
  version_ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
done
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w${version_ldflags}" -o "${out}/" "${k8s_cmds[@]/#/k8s.io/kubernetes/cmd/}"

# etcd: its server module carries replace directives, so it is built from a consumer module too.
mkdir -p "${work}/etcd" && cd "${work}/etcd"
go mod init lmops.local/etcd >/dev/null 2>&1
go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >/dev/null
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "${out}/etcd" go.etcd.io/etcd/server/v3

mkdir -p "${work}/helm" && cd "${work}/helm"
go mod init lmops.local/helm >/dev/null 2>&1
go get "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" >/dev/null
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "${out}/helm" helm.sh/helm/v3/cmd/helm

kuberay_module="github.com/ray-project/kuberay/ray-operator"
kuberay_used="${KUBERAY_VERSION}"
kuberay_dir="$( (go mod download -json "${kuberay_module}@${kuberay_used}" || true) | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
if [ -z "${kuberay_dir}" ]; then
  echo "NOTICE: the Go module proxy does not serve ${kuberay_module}@${KUBERAY_VERSION};" \
       "using ${KUBERAY_FALLBACK_VERSION}'s CRDs instead" >&2
  kuberay_used="${KUBERAY_FALLBACK_VERSION}"
  kuberay_dir="$( (go mod download -json "${kuberay_module}@${kuberay_used}" || true) | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
fi
[ -n "${kuberay_dir}" ] || { echo "cannot download ${kuberay_module} from the Go module proxy" >&2; exit 1; }
mkdir -p "${out}/kuberay-crds"
cp "${kuberay_dir}/config/crd/bases/"*.yaml "${out}/kuberay-crds/"
chmod u+w "${out}/kuberay-crds/"*.yaml
echo "${kuberay_used}" > "${out}/kuberay-crds/VERSION"

echo "${pins}" > "${out}/.complete"
link
echo "Kubernetes binaries built: ${out}"
