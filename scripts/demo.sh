#!/usr/bin/env bash
# npm run demo: installs what the demo needs (nginx, PostgreSQL or SQLite; no Docker, no GitHub), then runs
# `backout demo`: sandbox up → green deployed → assess → snapshot → Level 1 → validate → history → down.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKOUT_SETUP_FULL=0 bash scripts/setup.sh
bash scripts/ensure-built.sh
exec node dist/cli/index.js demo "$@"
