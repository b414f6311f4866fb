#!/usr/bin/env bash
# Installs what pg_doorman's build, demo, tests and bench need on a fresh Debian machine.
# Idempotent: does nothing when everything is present. Usage: scripts/deps.sh [--bench]
set -euo pipefail

need=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql postgresql-contrib)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v runuser >/dev/null 2>&1 || need+=(util-linux)
command -v curl >/dev/null 2>&1 || need+=(curl)
# ss: the upgrade tests count each process's backend sockets.
command -v ss >/dev/null 2>&1 || need+=(iproute2)
# Driver suites (crates/pg_doorman/tests/drivers): Debian's Python with psycopg 3 and asyncpg
# (and prometheus_client, whose parser checks /metrics),
# a JDK with pgjdbc, and Node.js with node-postgres from the npm registry.
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import psycopg, asyncpg, prometheus_client' >/dev/null 2>&1 \
  || need+=(python3 python3-psycopg python3-asyncpg python3-prometheus-client)
[ -f /usr/share/java/postgresql.jar ] || need+=(libpostgresql-jdbc-java)
command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
# Patroni tests (patroni_proxy, pg_doorman's fallback): Debian's etcd; Patroni from PyPI below.
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ "${1:-}" = "--bench" ]; then
  command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Patroni in its own virtualenv outside /root, so the postgres user (who runs it in tests)
# can execute it. PATRONI_BIN overrides the location for tests.
if [ ! -x /opt/doorman-patroni/bin/patroni ]; then
  echo "installing Patroni 4.1.5 (PyPI) into /opt/doorman-patroni"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO /usr/bin/python3 -m venv /opt/doorman-patroni
  $SUDO /opt/doorman-patroni/bin/pip install -q 'patroni[etcd3]==4.1.5' psycopg2-binary
fi
node_dir="$(dirname "$0")/../crates/pg_doorman/tests/drivers/node"
if [ ! -d "$node_dir/node_modules/pg" ]; then
  echo "installing node-postgres for the driver tests"
  (cd "$node_dir" && npm install --no-audit --no-fund --silent)
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (Rust 1.95 or newer): https://rustup.rs" >&2
  exit 1
fi
