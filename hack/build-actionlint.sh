#!/usr/bin/env bash
# Builds the pinned actionlint (the GitHub Actions workflow linter) from its Go module into
# .cache/tools/actionlint-<version>/, so tests/unit/test_release_workflow.py lints .github/workflows with no
# network at test time. A later run with the same version does nothing.
set -euo pipefail

ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-v1.7.12}"

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${root}/.cache/tools/actionlint-${ACTIONLINT_VERSION}"
if [ -x "${out}/actionlint" ]; then
  echo "actionlint up to date: ${out}"
  exit 0
fi
command -v go >/dev/null || { echo "go is required to build actionlint (https://go.dev/dl/)" >&2; exit 1; }
mkdir -p "${out}"
GOBIN="${out}" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
  "github.com/rhysd/actionlint/cmd/actionlint@${ACTIONLINT_VERSION}"
ln -sfn "actionlint-${ACTIONLINT_VERSION}/actionlint" "${root}/.cache/tools/actionlint"
echo "actionlint built: ${out}/actionlint"
