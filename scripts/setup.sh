#!/usr/bin/env bash
# Everything backout's demo and tests need, installed idempotently: system packages, then node modules.
# Never rewrites a tracked file: node modules come from `npm ci`, which installs exactly package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-system.sh
if ! node scripts/deps-current.mjs; then
  if [ -L node_modules ]; then
    # A shared node_modules (a git worktree linking the main checkout's): not ours to replace.
    echo "backout setup: node_modules is a link to $(readlink node_modules) and does not match package-lock.json — run npm ci there" >&2
    exit 2
  fi
  echo "backout setup: installing node modules (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi
