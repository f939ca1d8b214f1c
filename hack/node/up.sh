#!/usr/bin/env bash
# Starts a real single-node Kubernetes on this machine (root, Linux, no Docker): containerd + runc, a CNI
# bridge, etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, CoreDNS and
# KubeRay's operator as pods, with every image built locally (hack/images/). A node that was up is stopped
# first. Afterwards: export KUBECONFIG=${NODE_DIR}/pki/admin.kubeconfig. `hack/node/down.sh` removes it all.
#
# Nothing can leave the machine: pods get routes to the pod and service ranges only (no default route), and
# names resolve through the cluster's CoreDNS, which forwards nowhere (kubelet's resolv.conf has no nameserver).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "${here}/lib.sh"

missing="$("${LMOPS_ROOT}/hack/images/prerequisites.sh")" || { echo "cannot start the node: ${missing}" >&2; exit 1; }
"${here}/down.sh"
trap 'echo "up.sh failed; stopping what it started (logs stay in ${NODE_DIR}/logs)" >&2; "${here}/down.sh"' ERR
t0=$(date +%s)
"${LMOPS_ROOT}/hack/build-binaries.sh" >/dev/null
mkdir -p "${NODE_DIR}"/{cni,etcd,logs,pids} /var/lib/kubelet
# Cluster pods see no nameserver but CoreDNS; CoreDNS (dnsPolicy Default) sees none at all.
printf 'options ndots:1\n' >"${NODE_DIR}/resolv.conf"
cp "${here}/cni.conflist" "${NODE_DIR}/cni/10-lmops.conflist"

say "bridge ${BRIDGE} ${NODE_IP}/24 (the node's address; pods route only to 10.244.0.0/16 and 10.96.0.0/16)"
ip link add "${BRIDGE}" type bridge
ip addr add "${NODE_IP}/24" dev "${BRIDGE}"
ip link set "${BRIDGE}" up

say "containerd"
export NODE_DIR PAUSE_IMAGE="localhost/lmops/pause:${IMAGE_TAG:-dev}"
envsubst '${NODE_DIR} ${PAUSE_IMAGE}' <"${here}/containerd.toml" >"${NODE_DIR}/containerd.toml"
start containerd containerd --config "${NODE_DIR}/containerd.toml"
wait_for containerd 30 ctr version

say "PKI, etcd, kube-apiserver, kube-controller-manager, kube-scheduler"
"${here}/pki.sh"
pki="${NODE_DIR}/pki"
start etcd "${BIN}/etcd" --data-dir "${NODE_DIR}/etcd" --listen-client-urls http://127.0.0.1:2379 \
  --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
  --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster default=http://127.0.0.1:2380 \
  --listen-metrics-urls http://127.0.0.1:2381 --quota-backend-bytes=2147483648
start kube-apiserver "${BIN}/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
  --bind-address="${NODE_IP}" --advertise-address="${NODE_IP}" --secure-port=6443 \
  --tls-cert-file="${pki}/apiserver.crt" --tls-private-key-file="${pki}/apiserver.key" --client-ca-file="${pki}/ca.crt" \
  --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="${pki}/sa.pub" \
  --service-account-signing-key-file="${pki}/sa.key" --service-cluster-ip-range=10.96.0.0/16 \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction --allow-privileged=true \
  --kubelet-client-certificate="${pki}/admin.crt" --kubelet-client-key="${pki}/admin.key" \
  --kubelet-preferred-address-types=InternalIP --cert-dir="${NODE_DIR}/apiserver-certs" \
  --profiling=false
wait_for kube-apiserver 120 kubectl get --raw /readyz
start kube-controller-manager "${BIN}/kube-controller-manager" --kubeconfig="${pki}/kcm.kubeconfig" \
  --authentication-kubeconfig="${pki}/kcm.kubeconfig" --authorization-kubeconfig="${pki}/kcm.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --service-account-private-key-file="${pki}/sa.key" \
  --root-ca-file="${pki}/ca.crt" --use-service-account-credentials=true \
  --cluster-signing-cert-file="${pki}/ca.crt" --cluster-signing-key-file="${pki}/ca.key" \
  --controllers='*,-bootstrapsigner,-tokencleaner,-nodeipam,-route,-cloud-node-lifecycle'
start kube-scheduler "${BIN}/kube-scheduler" --kubeconfig="${pki}/scheduler.kubeconfig" \
  --authentication-kubeconfig="${pki}/scheduler.kubeconfig" --authorization-kubeconfig="${pki}/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false

say "images (built once, cached; imported into containerd when it lacks them)"
"${here}/images.sh"
set -a && source "${NODE_DIR}/images.env" && set +a

say "kubelet and kube-proxy"
envsubst '${NODE_DIR}' <"${here}/kubelet.yaml" >"${NODE_DIR}/kubelet.yaml"
printf 'tlsCertFile: "%s"\ntlsPrivateKeyFile: "%s"\n' "${pki}/kubelet-server.crt" "${pki}/kubelet-server.key" \
  >>"${NODE_DIR}/kubelet.yaml"
start kubelet "${BIN}/kubelet" --config="${NODE_DIR}/kubelet.yaml" --kubeconfig="${pki}/kubelet.kubeconfig" \
  --hostname-override="${NODE_NAME}" --node-ip="${NODE_IP}" --root-dir=/var/lib/kubelet
start kube-proxy "${BIN}/kube-proxy" --kubeconfig="${pki}/kube-proxy.kubeconfig" --hostname-override="${NODE_NAME}" \
  --cluster-cidr=10.244.0.0/16 --proxy-mode=iptables --conntrack-max-per-core=0 \
  --nodeport-addresses="${NODE_IP}/32" --metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256
wait_for "node ${NODE_NAME}" 120 kubectl get node "${NODE_NAME}"
kubectl wait --for=condition=Ready "node/${NODE_NAME}" --timeout=120s >/dev/null
# The GPU-scheduling contract is testable without a GPU: the node advertises nvidia.com/gpu (an extended
# resource no device plugin manages, so kubelet keeps it) and carries the GPU product label.
kubectl label node "${NODE_NAME}" --overwrite nvidia.com/gpu.product=NVIDIA-L4 >/dev/null
kubectl patch node "${NODE_NAME}" --subresource=status --type=json \
  -p '[{"op": "add", "path": "/status/capacity/nvidia.com~1gpu", "value": "4"}]' >/dev/null

say "CoreDNS and KubeRay's operator"
envsubst '${COREDNS_IMAGE}' <"${here}/coredns.yaml" | kubectl apply -f - >/dev/null
kubectl apply --server-side -f "${BIN}/kuberay-crds/" >/dev/null
kubectl apply -f "${LMOPS_ROOT}/.cache/bin/ray-operator/rbac/role.yaml" >/dev/null
envsubst '${KUBERAY_IMAGE}' <"${here}/kuberay.yaml" | kubectl apply -f - >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=120s >/dev/null
kubectl -n kube-system rollout status deployment/coredns --timeout=180s >/dev/null
kubectl -n kuberay-system rollout status deployment/kuberay-operator --timeout=180s >/dev/null
say "node up in $(($(date +%s) - t0))s: export KUBECONFIG=${KUBECONFIG_ADMIN}"
