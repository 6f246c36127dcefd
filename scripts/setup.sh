#!/usr/bin/env bash
# Everything backout's demo and tests need, installed idempotently: system packages, then node modules.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-system.sh
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "backout setup: installing node modules"
  # npm install, not npm ci: npm 11's ci rejects this lock over optional platform packages of a lint
  # dependency (unrs-resolver) even when the lock was just written by npm install; install honours the lock.
  npm install --no-audit --no-fund --loglevel=error
fi
