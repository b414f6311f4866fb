#!/usr/bin/env bash
# A driver's own test suite (../shared/suites/NAME/run.sh, psycopg by default) through the
# release pg_doorman in front of a throwaway PostgreSQL 15, in session and transaction mode.
# The suite's user postgres (password "postgres", superuser) reaches database holdout_psycopg,
# created fresh for each mode with a statement_timeout of 60 s, as run.sh asks.
# Env: SUITE_DIR (../shared/suites/psycopg), SUITE_MODES ("session transaction"),
#      SUITE_POOL (pool_size, 20), BENCH_SKIP_BUILD=1 to reuse target/release/pg_doorman,
#      BENCH_BIN (another build); pytest arguments after the script's own are passed on.
# Prints each mode's lines from run.sh (logs stay in $OUT of each run, named in its output).
set -euo pipefail
cd "$(dirname "$0")/.."
SUITE=$(cd "${SUITE_DIR:-../shared/suites/psycopg}" && pwd)
[ "${BENCH_SKIP_BUILD:-0}" = 1 ] || cargo build --release --locked -p pg_doorman
source bench/lib.sh
start_postgres 200
pg_admin -c "ALTER ROLE postgres PASSWORD 'postgres'"
PG_SECRET=$(secret_of postgres)
for mode in ${SUITE_MODES:-session transaction}; do
  pg_admin -c "DROP DATABASE IF EXISTS holdout_psycopg" \
    -c "CREATE DATABASE holdout_psycopg TEMPLATE template0" \
    -c "ALTER DATABASE holdout_psycopg SET statement_timeout TO '60s'"
  DOORMAN_PORT=$(port)
  cat > "$WORK/suite.yaml" <<YAML
general:
  host: 127.0.0.1
  port: $DOORMAN_PORT
  log_client_connections: false
  log_client_disconnections: false
pools:
  holdout_psycopg:
    server_host: 127.0.0.1
    server_port: $PG_PORT
    pool_mode: $mode
    users:
      - username: postgres
        password: "$PG_SECRET"
        pool_size: ${SUITE_POOL:-20}
YAML
  start_doorman "$WORK/suite.yaml" -l warn
  echo "== $mode"
  PGUSER=postgres PGPASSWORD=postgres bash "$SUITE/run.sh" 127.0.0.1 "$DOORMAN_PORT" "$mode" "$@" 2>&1 \
    | grep -E '^psycopg|timed out|OUT|logs' || true
  kill "$DOORMAN_PID"; wait "$DOORMAN_PID" 2>/dev/null || true
done
