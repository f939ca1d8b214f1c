#!/usr/bin/env bash
# Says what this machine lacks to build the images and run the single-node cluster (root, Linux, the Debian
# packages, Go), on stdout, and exits 1; exits 0 silently when nothing is missing. The cluster tier's tests
# skip with this text.
missing=()
[ "$(uname -s)" = Linux ] || missing+=("Linux")
[ "$(id -u)" = 0 ] || missing+=("root")
for tool in containerd containerd-shim-runc-v2 runc ctr buildah debootstrap catatonit iptables conntrack openssl go; do
  command -v "${tool}" >/dev/null || missing+=("${tool}")
done
[ -x /usr/lib/cni/bridge ] || missing+=("CNI plugins (/usr/lib/cni/bridge)")
[ ${#missing[@]} -eq 0 ] && exit 0
echo "missing: ${missing[*]} (as root: apt-get install containerd runc containernetworking-plugins iptables" \
  "conntrack socat catatonit buildah debootstrap)"
exit 1
