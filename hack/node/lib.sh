# Shared by hack/node/*.sh (sourced): where the single-node cluster keeps its state, and how its processes are
# started and stopped (by the PIDs recorded here, never by name).
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

NODE_DIR="${LMOPS_NODE_DIR:-/var/lib/lmops-node}"
NODE_NAME="lmops-node"
NODE_IP="10.244.0.1"
BRIDGE="lmops0"
KUBECONFIG_ADMIN="${NODE_DIR}/pki/admin.kubeconfig"
BIN="${LMOPS_ROOT}/.cache/bin/current"

kubectl() { "${BIN}/kubectl" --kubeconfig "${KUBECONFIG_ADMIN}" "$@"; }

# start NAME CMD...: run CMD in its own session, logging to logs/NAME.log, its PID in pids/NAME.pid.
start() {
  local name=$1
  shift
  mkdir -p "${NODE_DIR}/logs" "${NODE_DIR}/pids"
  setsid "$@" >"${NODE_DIR}/logs/${name}.log" 2>&1 </dev/null &
  echo $! >"${NODE_DIR}/pids/${name}.pid"
}

# running NAME: whether the process recorded for NAME is alive.
running() {
  local pid
  pid="$(cat "${NODE_DIR}/pids/$1.pid" 2>/dev/null)" && [ -n "${pid}" ] && kill -0 "${pid}" 2>/dev/null
}

# stop NAME: SIGTERM, up to 15 s to exit, then SIGKILL.
stop() {
  local pid i
  pid="$(cat "${NODE_DIR}/pids/$1.pid" 2>/dev/null)" || return 0
  if [ -n "${pid}" ] && kill -0 "${pid}" 2>/dev/null; then
    kill "${pid}" 2>/dev/null || true
    for i in $(seq 1 30); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.5; done
    kill -9 "${pid}" 2>/dev/null || true
  fi
  rm -f "${NODE_DIR}/pids/$1.pid"
}

# wait_for WHAT SECONDS CMD...: retry CMD every second until it succeeds; fail naming WHAT after SECONDS.
wait_for() {
  local what=$1 secs=$2 i
  shift 2
  for i in $(seq 1 "${secs}"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "timed out after ${secs}s waiting for ${what}" >&2
  return 1
}
