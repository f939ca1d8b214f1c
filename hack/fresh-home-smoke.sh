#!/usr/bin/env bash
# `make up` then `make down` as a newcomer runs them: HOME is a new empty directory and nothing comes from the
# caller's environment but PATH (no RAY_*, no LMOPS_*, no caches), so a state or token that only a developer's
# machine holds (~/.ray/auth_token, ~/.cache/lmops) cannot hide a failure. Fails unless a completion comes
# back; stops whatever it started, also when it fails. Run by `make test` once the virtualenv exists.
set -euo pipefail
cd "$(dirname "$0")/.."

home=$(mktemp -d -t lmops-fresh-home.XXXXXX)
log="$home.log"
fresh() { env -i HOME="$home" PATH="$PATH" LANG=C.UTF-8 "$@"; }

temp_dir=""
# The Ray temp dir of the head `make up` started, from the fresh home's state file.
recorded_temp_dir() {
  local state="$home/.cache/lmops/local-ray.json"
  [[ -f $state ]] && sed -n 's/.*"temp_dir": *"\([^"]*\)".*/\1/p' "$state"
  return 0
}
# PIDs of that head's processes (the patterns come from a file, so grep never matches its own command line).
ray_pids() {
  [[ -n $temp_dir ]] || temp_dir=$(recorded_temp_dir)
  [[ -n $temp_dir ]] || return 0
  grep -lsaF -f <(printf '%s\n' "=$temp_dir" "$temp_dir/") /proc/[0-9]*/cmdline | cut -d/ -f3 || true
}

cleanup() {
  local rc=$? pids
  pids=$(ray_pids)
  if [[ -n $pids ]]; then
    fresh make --no-print-directory down >>"$log" 2>&1 || true
    pids=$(ray_pids)
    if [[ -n $pids ]]; then
      echo "fresh-home smoke: \`make down\` left Ray processes running; killing $pids" >&2
      # shellcheck disable=SC2086
      kill -9 $pids 2>/dev/null || true
      rc=1
    fi
  fi
  rm -rf "$home" "$log"
  exit "$rc"
}
trap cleanup EXIT

echo "fresh-home smoke: make up && make down with HOME=$home and an empty environment"
if ! fresh make --no-print-directory up 2>&1 | tee "$log"; then
  echo "fresh-home smoke: \`make up\` failed in a fresh home (log above)" >&2
  exit 1
fi
if ! grep -q '"object": "text_completion"' "$log"; then
  echo "fresh-home smoke: \`make up\` printed no completion" >&2
  exit 1
fi
temp_dir=$(recorded_temp_dir)
fresh make --no-print-directory down
if [[ -n $(ray_pids) ]]; then
  echo "fresh-home smoke: Ray still runs after \`make down\`" >&2
  exit 1
fi
echo "fresh-home smoke: passed"
