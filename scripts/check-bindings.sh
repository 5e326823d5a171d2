#!/usr/bin/env bash
# Fails when the checked-in bindings differ from what bindings/generate.sh produces now.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash bindings/generate.sh
if ! git diff --quiet -- bindings/ || [ -n "$(git status --porcelain -- bindings/)" ]; then
  git status --short -- bindings/
  echo "bindings/ is stale: run bindings/generate.sh and commit the result" >&2
  exit 1
fi
echo "bindings: up to date"
