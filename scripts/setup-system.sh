#!/usr/bin/env bash
# Installs the system packages backout's demo and tests drive for real (nginx, PostgreSQL, SQLite, Alembic,
# Docker Engine, Prometheus, wrk). Idempotent: does nothing when everything is present.
set -euo pipefail
need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
[ -x /usr/bin/alembic ] || need+=(alembic)
# alembic on PostgreSQL (SQLAlchemy's default driver)
/usr/bin/python3 -c 'import psycopg2' >/dev/null 2>&1 || need+=(python3-psycopg2)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql-15)
command -v strace >/dev/null 2>&1 || need+=(strace) # tests: kill a restore at every rename
if [ "${BACKOUT_SETUP_FULL:-1}" = 1 ]; then
  command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
  command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
  dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "backout setup: missing system packages: ${need[*]} — install them (as root: apt-get install ${need[*]})" >&2
  exit 2
fi
echo "backout setup: installing ${need[*]}"
# Keep Debian from starting the daemons it installs: backout starts its own, on its own ports.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
[ "$created_policy" = 1 ] && rm -f "$policy"
echo "backout setup: system packages ready"
