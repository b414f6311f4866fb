#!/usr/bin/env bash
# README command 1: build pg_doorman, start a throwaway PostgreSQL, start pg_doorman in front of
# it with examples/pg_doorman.yaml (server_port pointed at the throwaway server), and run real
# traffic through it: psql and pgbench (select-only and tpcb-like, simple, extended and prepared protocol).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --locked -p pg_doorman
BIN="$PWD/target/release/pg_doorman"
PGBIN=/usr/lib/postgresql/15/bin
WORK=$(mktemp -d /tmp/pg_doorman-demo.XXXXXX)
PGPORT_DEMO=$(( 20000 + RANDOM % 20000 ))
DPORT=$(( PGPORT_DEMO + 1 ))
as_pg() { if [ "$(id -u)" -eq 0 ]; then chown -R postgres "$WORK"; runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  [ -n "${DPID:-}" ] && kill "$DPID" 2>/dev/null || true
  as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== starting PostgreSQL on 127.0.0.1:$PGPORT_DEMO"
as_pg "$PGBIN/initdb" -U postgres --auth=trust --no-sync -D "$WORK/data" >/dev/null
cat >> "$WORK/data/postgresql.conf" <<CONF
port = $PGPORT_DEMO
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
fsync = off
max_connections = 200
CONF
printf 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' > "$WORK/data/pg_hba.conf"
as_pg "$PGBIN/pg_ctl" -w -D "$WORK/data" -l "$WORK/postgres.log" start >/dev/null
psql -X -q -h "$WORK" -p "$PGPORT_DEMO" -U postgres -c "CREATE ROLE bench LOGIN PASSWORD 'bench'" -c "CREATE DATABASE bench OWNER bench"

echo "== starting pg_doorman on 127.0.0.1:$DPORT with examples/pg_doorman.yaml"
MPORT=$(( DPORT + 1 ))
sed -e "s/^  port: 6432/  port: $DPORT/" -e "s/server_port: 5432/server_port: $PGPORT_DEMO/" \
  -e "s/^  port: 9127/  port: $MPORT/" examples/pg_doorman.yaml > "$WORK/pg_doorman.yaml"
"$BIN" -t "$WORK/pg_doorman.yaml"
"$BIN" "$WORK/pg_doorman.yaml" > "$WORK/pg_doorman.log" 2>&1 &
DPID=$!
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$DPORT") 2>/dev/null && break; sleep 0.1; done

export PGPASSWORD=bench
echo "== psql through pg_doorman"
psql -X -h 127.0.0.1 -p "$DPORT" -U bench bench -c "SELECT version(), current_user, inet_server_port() AS postgres_port"
echo "== pgbench through pg_doorman (transaction pooling, pool_size 20, 50 clients)"
pgbench -q -i -s 10 -h 127.0.0.1 -p "$DPORT" -U bench bench
for proto in simple extended prepared; do
  for script in "-S" "-b tpcb-like"; do
    echo "-- pgbench $script -M $proto"
    # shellcheck disable=SC2086
    pgbench $script -M "$proto" -c 50 -j 2 -T 5 -h 127.0.0.1 -p "$DPORT" -U bench bench 2>&1 | grep -E "^(transaction type|number of failed|latency average|tps)"
  done
done
echo "== admin console: SHOW POOLS, SHOW STATS, SHOW POOL_SCALING (psql -U admin pgdoorman)"
PGPASSWORD=change_me psql -X -h 127.0.0.1 -p "$DPORT" -U admin pgdoorman -c "SHOW POOLS" -c "SHOW STATS" -c "SHOW POOL_SCALING"
echo "== /metrics (a few families)"
curl -s "http://127.0.0.1:$MPORT/metrics" | grep -E "^pg_doorman_pools_(transactions_total|clients|servers)" || true
echo "== backend connections PostgreSQL saw for user bench (at most pool_size 20):"
psql -X -At -h "$WORK" -p "$PGPORT_DEMO" -U postgres -c "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bench'"
echo "== pg_doorman log (last lines)"
tail -n 5 "$WORK/pg_doorman.log"
