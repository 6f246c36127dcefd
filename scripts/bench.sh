#!/usr/bin/env bash
# npm run bench: installs what it needs, builds the bundles if stale, then runs scripts/bench.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/ensure-built.sh
exec npx tsx scripts/bench.ts "$@"
