#!/usr/bin/env bash
# Builds CoreDNS from its Go module with only the plugins the single-node cluster uses (hack/coredns/main.go:
# cluster names from the kubernetes plugin; nothing forwards a query anywhere).
# Output: <cache>/bin/coredns-<key>/coredns, linked from .cache/bin/coredns.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"
src="${LMOPS_ROOT}/hack/coredns/main.go"
out="${LMOPS_CACHE}/bin/coredns-$(cache_key "${COREDNS_VERSION}" "${src}" "$0")"
if [ ! -f "${out}/.complete" ]; then
  command -v go >/dev/null || { echo "go is required to build CoreDNS (https://go.dev/dl/)" >&2; exit 1; }
  say "building CoreDNS ${COREDNS_VERSION}"
  work="$(mktemp -d)"
  trap 'rm -rf "${work}"' EXIT
  cp "${src}" "${work}/"
  cd "${work}"
  go mod init lmops.local/coredns >/dev/null 2>&1
  go get "github.com/coredns/coredns@${COREDNS_VERSION}" >/dev/null 2>&1
  go mod tidy >/dev/null 2>&1
  mkdir -p "${out}"
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "${out}/coredns" .
  echo "${COREDNS_VERSION}" > "${out}/.complete"
fi
mkdir -p "${LMOPS_ROOT}/.cache/bin" && ln -sfn "${out}" "${LMOPS_ROOT}/.cache/bin/coredns"
echo "${out}"
