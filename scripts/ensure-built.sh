#!/usr/bin/env bash
# Builds the bundles when they may not match the sources (the tests and the demo run what users run).
# After a build, tmp/build-stamp (git-ignored) records a hash of the sources and of dist/: from then on a
# source edit, or a dist/ put back by git (whose fresh file times would fool a time comparison), rebuilds.
# Without a stamp (a fresh clone), file times decide, as before.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=tmp/build-stamp
hashes() {
  local src dst
  src=$(find src package-lock.json scripts/build.mjs -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)
  dst=$( (find dist -type f -name '*.js' -print0 2>/dev/null || true) | sort -z | xargs -0 -r sha256sum | sha256sum | cut -c1-64)
  echo "$src $dst"
}
stale=0
if [ -f "$stamp" ]; then
  [ "$(cat "$stamp")" = "$(hashes)" ] || stale=1
fi
for entry in src/cli/index.ts src/actions/*-action.ts; do
  name=$(basename "$entry" .ts); name=${name%-action}; [ "$entry" = src/cli/index.ts ] && name=cli
  out=dist/$name/index.js
  if [ ! -f "$out" ] || { [ ! -f "$stamp" ] && [ -n "$(find src package-lock.json -newer "$out" -type f | head -1)" ]; }; then stale=1; fi
done
if [ "$stale" = 1 ]; then node scripts/build.mjs; fi
if [ "$stale" = 1 ] || [ ! -f "$stamp" ]; then
  mkdir -p tmp
  hashes >"$stamp"
fi
