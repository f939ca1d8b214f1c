#!/usr/bin/env bash
# Installs the Debian packages the single-node cluster and its image builds need, when they are missing and
# this is a root Debian machine: the first `make test` on a fresh machine then runs the cluster tier instead of
# skipping it. Elsewhere (not root, no apt-get) it says what is missing and leaves the machine alone; the
# cluster tier then skips with the same reason.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "${here}/../lib.sh"

PACKAGES=(containerd runc containernetworking-plugins iptables conntrack socat catatonit buildah debootstrap)

missing="$("${here}/../images/prerequisites.sh")" && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  say "the single-node cluster cannot run here: ${missing}"
  exit 0
fi
say "installing the cluster's Debian packages (${PACKAGES[*]}) ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
say "installed: $("${here}/../images/prerequisites.sh" || true)"
