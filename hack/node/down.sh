#!/usr/bin/env bash
# Stops the single-node cluster hack/node/up.sh started and leaves nothing behind: its processes (by recorded
# PID), every container and shim, pod network namespaces and mounts, the KUBE-*/CNI-* iptables chains, the
# bridge, the pod cgroups and the cluster's state. Images stay in containerd (/var/lib/containerd) and the
# build cache, so the next start is quick. Logs of the last run stay in ${NODE_DIR}/logs. Safe to run twice.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || { echo "the node needs root" >&2; exit 1; }
# Control-plane clients first, so nothing recreates what is removed next.
for name in kube-proxy kubelet kube-scheduler kube-controller-manager; do stop "${name}"; done

# Every pod's containers: kill and delete them through containerd while it still runs.
if running containerd; then
  for id in $(ctr -n k8s.io tasks ls -q 2>/dev/null); do ctr -n k8s.io tasks kill -s SIGKILL "${id}" >/dev/null 2>&1; done
  for id in $(ctr -n k8s.io tasks ls -q 2>/dev/null); do
    for _ in $(seq 1 20); do
      ctr -n k8s.io tasks rm -f "${id}" >/dev/null 2>&1 && break
      ctr -n k8s.io tasks ls -q 2>/dev/null | grep -qx "${id}" || break  # gone with its sandbox already
      sleep 0.5
    done
  done
  for id in $(ctr -n k8s.io containers ls -q 2>/dev/null); do ctr -n k8s.io containers rm "${id}" >/dev/null 2>&1; done
fi
stop kube-apiserver
stop etcd
stop containerd
# A shim whose task could not be deleted outlives containerd: its PID is in containerd's state directory.
for pidfile in /run/containerd/io.containerd.runtime.v2.task/k8s.io/*/shim.pid; do
  [ -f "${pidfile}" ] && kill -9 "$(cat "${pidfile}")" 2>/dev/null
done
# One whose task directory is already gone (its shim.pid with it) is found by its command line (the same
# pattern as tests/support/node.py's node_shims).
pkill -9 -f 'containerd-shim-runc-v2 -namespace k8s\.io .*-address /run/containerd/containerd\.sock' 2>/dev/null

# Mounts: pod volumes, the kubelet's own bind mount, sandbox shm, container rootfs, network namespaces.
findmnt -rn -o TARGET | grep -E '^(/var/lib/kubelet|/run/containerd|/run/netns|/var/lib/containerd/io.containerd.grpc)' \
  | sort -r | while read -r target; do umount -l "${target}" 2>/dev/null; done
rm -f /run/netns/cni-* 2>/dev/null

# iptables: kube-proxy's and kubelet's chains (KUBE-*) and any CNI-* chain, in every table, v4 and v6, in both
# backends (kube-proxy picks the one the host's rules already use).
for ipt in iptables-nft ip6tables-nft iptables-legacy ip6tables-legacy; do
  command -v "${ipt}" >/dev/null || continue
  for table in filter nat mangle; do
    chains="$("${ipt}" -t "${table}" -S 2>/dev/null | sed -n 's/^-N \(\(KUBE\|CNI\)-[^ ]*\)$/\1/p')"
    [ -n "${chains}" ] || continue
    "${ipt}" -t "${table}" -S 2>/dev/null | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j (KUBE|CNI)-' \
      | sed 's/^-A /-D /' | while read -r rule; do eval "${ipt} -t ${table} ${rule}" 2>/dev/null; done
    for chain in ${chains}; do "${ipt}" -t "${table}" -F "${chain}" 2>/dev/null; done
    for chain in ${chains}; do "${ipt}" -t "${table}" -X "${chain}" 2>/dev/null; done
  done
done

ip link del "${BRIDGE}" 2>/dev/null
for cg in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
  [ -d "${cg}" ] && find "${cg}" -depth -type d -exec rmdir {} + 2>/dev/null
done
rm -rf /var/lib/cni/networks/lmops-pod-net /var/lib/cni/results
if ! findmnt -rn -o TARGET | grep -q '^/var/lib/kubelet'; then rm -rf /var/lib/kubelet; fi
find "${NODE_DIR}" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} + 2>/dev/null
exit 0
