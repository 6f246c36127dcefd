#!/usr/bin/env bash
# Builds the bundles when a source file is newer than them (the tests and the demo run what users run).
set -euo pipefail
cd "$(dirname "$0")/.."
stale=0
for entry in src/cli/index.ts src/actions/*-action.ts; do
  name=$(basename "$entry" .ts); name=${name%-action}; [ "$entry" = src/cli/index.ts ] && name=cli
  out=dist/$name/index.js
  if [ ! -f "$out" ] || [ -n "$(find src package-lock.json -newer "$out" -type f | head -1)" ]; then stale=1; fi
done
if [ "$stale" = 1 ]; then node scripts/build.mjs; fi
