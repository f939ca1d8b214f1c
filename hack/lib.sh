# Shared by the hack/ scripts (sourced, not run): where the per-user cache lives and how a cache key is made.
# The cache is outside the clone on purpose: CI runs in a fresh clone, so anything cached inside it is cold.

LMOPS_CACHE="${LMOPS_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/lmops}"
LMOPS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# cache_key TEXT... FILE...: a short hash of the arguments, reading the content of those that are files, so a key
# changes exactly when a pin or a recipe changes.
cache_key() {
  local arg
  for arg in "$@"; do
    if [ -f "${arg}" ]; then printf 'file %s\n' "${arg##*/}"; cat "${arg}"; else printf 'text %s\n' "${arg}"; fi
  done | sha256sum | cut -c1-16
}

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
