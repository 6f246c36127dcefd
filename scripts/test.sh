#!/usr/bin/env bash
# npm test: installs what the tests need (nginx, PostgreSQL, SQLite, Alembic, Prometheus, Docker, node
# modules), builds the CLI if stale, then runs every test against the real systems.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/ensure-built.sh
exec npx jest "$@"
