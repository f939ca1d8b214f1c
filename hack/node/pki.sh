#!/usr/bin/env bash
# The cluster's PKI with openssl: a CA, the API server's serving certificate (for the node IP and the
# kubernetes Service), client certificates for admin, kubelet, controller manager, scheduler and kube-proxy,
# the service-account key pair, and a kubeconfig per client. Valid for 30 days; up.sh makes a new one per start.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

pki="${NODE_DIR}/pki"
mkdir -p "${pki}" && cd "${pki}"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj "/CN=lmops-node-ca" 2>/dev/null
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null

# cert NAME CN [O] [SANS]: a key and a CA-signed certificate; with SANS it serves, without it is a client.
cert() {
  local name=$1 cn=$2 org=${3:-} sans=${4:-}
  openssl req -newkey rsa:2048 -nodes -keyout "${name}.key" -out "${name}.csr" -subj "/CN=${cn}${org:+/O=${org}}" \
    2>/dev/null
  if [ -n "${sans}" ]; then
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "${sans}" >"${name}.ext"
  else
    printf 'extendedKeyUsage=clientAuth\n' >"${name}.ext"
  fi
  openssl x509 -req -in "${name}.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "${name}.crt" -days 30 \
    -extfile "${name}.ext" 2>/dev/null
  rm -f "${name}.csr" "${name}.ext"
}
svc="kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert apiserver kube-apiserver "" "DNS:${svc},DNS:localhost,IP:127.0.0.1,IP:${NODE_IP},IP:10.96.0.1"
cert kubelet-server "system:node:${NODE_NAME}" "system:nodes" "DNS:${NODE_NAME},IP:${NODE_IP}"
cert admin admin system:masters
cert kubelet "system:node:${NODE_NAME}" system:nodes
cert kcm system:kube-controller-manager
cert scheduler system:kube-scheduler
cert kube-proxy system:kube-proxy

for client in admin kubelet kcm scheduler kube-proxy; do
  cat >"${client}.kubeconfig" <<EOK
apiVersion: v1
kind: Config
clusters:
- name: lmops-node
  cluster: {server: "https://${NODE_IP}:6443", certificate-authority: "${pki}/ca.crt"}
users:
- name: ${client}
  user: {client-certificate: "${pki}/${client}.crt", client-key: "${pki}/${client}.key"}
contexts:
- name: lmops-node
  context: {cluster: lmops-node, user: ${client}}
current-context: lmops-node
EOK
done
