#!/usr/bin/env bash
# The whole lmops path on a local kind cluster (needs Docker and kind; nothing here runs without them):
#   1. create the kind cluster (or reuse it),
#   2. build the operator and runtime images and load them into kind,
#   3. install KubeRay from its public Helm chart and lmops from charts/lmops (values: hack/kind-values.yaml,
#      the same file the test suite lints and renders),
#   4. apply examples/tiny.yaml (a tiny random-weight model on CPU), wait until it is Ready,
#   5. call its OpenAI endpoint through a port-forward.
# Settings: KIND_CLUSTER (default lmops), KUBERAY_VERSION (1.7.0), LMOPS_NAMESPACE (lmops-system),
# MODEL_NAMESPACE (default), READY_TIMEOUT (20m), SKIP_BUILD=1 to reuse images already loaded.
# `kind delete cluster --name lmops` removes everything.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "${root}"
KIND_CLUSTER="${KIND_CLUSTER:-lmops}"
KUBERAY_VERSION="${KUBERAY_VERSION:-1.7.0}"
LMOPS_NAMESPACE="${LMOPS_NAMESPACE:-lmops-system}"
MODEL_NAMESPACE="${MODEL_NAMESPACE:-default}"
READY_TIMEOUT="${READY_TIMEOUT:-20m}"
OPERATOR_IMAGE="lmops-operator:kind"   # must match hack/kind-values.yaml
RUNTIME_IMAGE="lmops-runtime:kind"     # must match hack/kind-values.yaml
MODEL="tiny"                           # metadata.name in examples/tiny.yaml

say() { printf '\n==> %s\n' "$*"; }
skip() { printf 'kind-up: cannot run: %s\n' "$*" >&2; exit 1; }

# Prerequisites first, each with the reason it is missing.
command -v docker >/dev/null || skip "docker is not installed"
docker_err="$(docker info 2>&1 >/dev/null)" || skip "docker info failed (no Docker engine running?): ${docker_err##*$'\n'}"
command -v kind >/dev/null || skip "kind is not installed (https://kind.sigs.k8s.io/docs/user/quick-start/)"
# Prefer the pinned kubectl/helm that `make binaries` builds; fall back to the ones on PATH.
bin="${root}/.cache/bin/current"
kubectl="$([ -x "${bin}/kubectl" ] && echo "${bin}/kubectl" || command -v kubectl || true)"
helm="$([ -x "${bin}/helm" ] && echo "${bin}/helm" || command -v helm || true)"
[ -n "${kubectl}" ] || skip "kubectl not found (run \`make binaries\` or install kubectl)"
[ -n "${helm}" ] || skip "helm not found (run \`make binaries\` or install helm)"

say "kind cluster ${KIND_CLUSTER}"
if ! kind get clusters 2>/dev/null | grep -qx "${KIND_CLUSTER}"; then
  kind create cluster --name "${KIND_CLUSTER}" --wait 180s
fi
context="kind-${KIND_CLUSTER}"
k() { "${kubectl}" --context "${context}" "$@"; }
h() { "${helm}" --kube-context "${context}" "$@"; }

if [ "${SKIP_BUILD:-0}" != "1" ]; then
  say "building ${OPERATOR_IMAGE} and ${RUNTIME_IMAGE}"
  docker build -f operator/Dockerfile -t "${OPERATOR_IMAGE}" .
  docker build -f runtime/Dockerfile -t "${RUNTIME_IMAGE}" .
  kind load docker-image --name "${KIND_CLUSTER}" "${OPERATOR_IMAGE}" "${RUNTIME_IMAGE}"
fi

say "KubeRay ${KUBERAY_VERSION} from its chart"
h repo add kuberay https://ray-project.github.io/kuberay-helm/ --force-update >/dev/null
h repo update kuberay >/dev/null
h upgrade --install kuberay-operator kuberay/kuberay-operator --version "${KUBERAY_VERSION}" \
  --namespace kuberay-system --create-namespace --wait --timeout 5m

say "lmops from charts/lmops"
h upgrade --install lmops charts/lmops --namespace "${LMOPS_NAMESPACE}" --create-namespace \
  --values hack/kind-values.yaml --wait --timeout 5m
# Helm installs CRDs only on first install; apply them so a re-run after an upgrade gets the new schema.
k apply --server-side --force-conflicts -f charts/lmops/crds/

say "examples/tiny.yaml in namespace ${MODEL_NAMESPACE}"
k apply -n "${MODEL_NAMESPACE}" -f examples/tiny.yaml
if ! k wait -n "${MODEL_NAMESPACE}" --for=condition=Ready "languagemodel/${MODEL}" --timeout="${READY_TIMEOUT}"; then
  k get -n "${MODEL_NAMESPACE}" "languagemodel/${MODEL}" -o yaml || true
  k get -n "${MODEL_NAMESPACE}" rayservice,pods || true
  k logs -n "${LMOPS_NAMESPACE}" deployment/lmops --tail=100 || true
  exit 1
fi

say "calling the endpoint through a port-forward"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
k port-forward -n "${MODEL_NAMESPACE}" "service/${MODEL}" "${port}:8000" >/tmp/lmops-kind-port-forward.log 2>&1 &
forward=$!
trap 'kill "${forward}" 2>/dev/null || true' EXIT
for _ in $(seq 1 30); do
  curl -fsS "http://127.0.0.1:${port}/v1/models" >/tmp/lmops-kind-models.json 2>/dev/null && break
  sleep 1
done
cat /tmp/lmops-kind-models.json
model_id="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])' </tmp/lmops-kind-models.json)"
curl -fsS "http://127.0.0.1:${port}/v1/completions" -H 'Content-Type: application/json' \
  -d "{\"model\": \"${model_id}\", \"prompt\": \"Hello\", \"max_tokens\": 8}"
echo
say "lmops on kind works: ${context}, LanguageModel ${MODEL_NAMESPACE}/${MODEL} answered"
