#!/usr/bin/env bash
# Ratio benchmark: direct PostgreSQL vs PgBouncer (Debian package) vs pg_doorman, interleaved in
# one run, on the same machine. Transaction pooling, pool of 40 server connections, MD5 auth.
#   - pgbench script "\set aid random(1, 100000)" / "SELECT :aid;", simple, extended and prepared
#     protocol (PgBouncer 1.18 cannot run prepared statements in transaction mode: its row fails),
#     1, 40, 120, 500 and 2000 clients, BENCH_SECONDS each (default 15); direct PostgreSQL
#     (max_connections 700) is skipped above 600 clients
#   - client TLS (PGSSLMODE=require, self-signed certificate) on PgBouncer and pg_doorman: 40 and
#     500 clients, and --connect with 20 clients (a TLS handshake per transaction)
#   - connection churn: pgbench --connect, 20 clients
#   - idle memory: 5,000 idle clients, pooler RSS before/after
# Prints a Markdown table (also written to bench/results/latest.md).
# Env: BENCH_SECONDS (15), BENCH_CLIENTS ("1 40 120 500 2000"), BENCH_WORKERS (pg_doorman worker_threads, 2),
#      BENCH_IDLE (5000), BENCH_SKIP_BUILD=1 to reuse target/release/pg_doorman (BENCH_BIN: another
#      build of it, say one from before a change),
#      BENCH_SKIP_EXTRAS=1 to skip the churn, TLS and idle-memory parts,
#      BENCH_PROTOCOLS ("simple extended prepared"),
#      BENCH_CPU_REPEAT (5; 0 skips the repeated CPU runs at 40/120 clients), BENCH_CPU_SECONDS (8).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECONDS:-15}
CLIENTS=${BENCH_CLIENTS:-"1 40 120 500 2000"}
WORKERS=${BENCH_WORKERS:-2}
IDLE=${BENCH_IDLE:-5000}
bash scripts/deps.sh --bench
[ "${BENCH_SKIP_BUILD:-0}" = 1 ] || cargo build --release --locked -p pg_doorman
source bench/lib.sh
start_postgres 700
make_tls
echo "== PgBouncer $($PGBOUNCER --version | head -1) on $BOUNCER_PORT"
write_bouncer 40 "" bench "$MD5"
start_bouncer

echo "== pg_doorman on $DOORMAN_PORT (worker_threads $WORKERS)"
cat > "$WORK/pg_doorman.yaml" <<YAML
general:
  host: 127.0.0.1
  port: $DOORMAN_PORT
  worker_threads: $WORKERS
  log_client_connections: false
  log_client_disconnections: false
  query_wait_timeout: 60s
  tls_mode: allow
  tls_certificate: "$WORK/tls.crt"
  tls_private_key: "$WORK/tls.key"
prometheus:
  enabled: true
  host: 127.0.0.1
  port: $METRICS_PORT
YAML
doorman_pools 40 bench "$MD5" >> "$WORK/pg_doorman.yaml"
start_doorman "$WORK/pg_doorman.yaml" -l warn

pgbench -q -i -s 10 -h 127.0.0.1 -p "$PG_PORT" -U bench bench >/dev/null 2>&1
printf '\\set aid random(1, 100000)\nSELECT :aid;\n' > "$WORK/select.sql"

RESULTS=$WORK/results.tsv
: > "$RESULTS"

# run_one TARGET PORT PID LABEL PROTOCOL CLIENTS [extra pgbench args...]
run_one() {
  local target=$1 p=$2 pid=$3 label=$4 proto=$5 c=$6; shift 6
  local j=$(( c < 2 ? c : 2 ))
  local dir="$WORK/log-$target-$proto-$c-$RANDOM"; mkdir -p "$dir"
  local before=0; [ "$pid" != - ] && before=$(cpu_ticks "$pid")
  local out
  out=$(cd "$dir" && pgbench -n -f "$WORK/select.sql" -M "$proto" -c "$c" -j "$j" -T "$SECS" --log --log-prefix=tx "$@" -h 127.0.0.1 -p "$p" -U bench bench 2>&1) || true
  local after=0; [ "$pid" != - ] && after=$(cpu_ticks "$pid")
  local tps failed tx
  tps=$(echo "$out" | awk '/^tps =/ {print $3; exit}')
  failed=$(echo "$out" | awk -F'[: ]+' '/^number of failed transactions/ {print $5; exit}')
  tx=$(echo "$out" | awk -F': ' '/^number of transactions actually processed/ {split($2,a,"/"); print a[1]; exit}')
  read -r p50 p99 _ < <(python3 "$ROOT/bench/stats.py" "$dir" || echo "nan nan 0")
  local cpu="-"
  if [ "$pid" != - ] && [ "${tx:-0}" -gt 0 ]; then
    cpu=$(python3 -c "print(f'{($after-$before)/$TICKS/$tx*100000:.2f}')")
  fi
  # Clients that abort (PgBouncer 1.18 with -M prepared: "P_0 already exists") fail the row.
  if echo "$out" | grep -q "aborted"; then
    failed="aborted: $(echo "$out" | grep -m1 -oE 'ERROR: .{0,50}')"
  fi
  # A pooler that died during the run fails its row (and PgBouncer is started again for the next).
  if [ "$pid" != - ] && ! kill -0 "$pid" 2>/dev/null; then
    failed="pooler process died"; cpu="-"
    [ "$target" = pgbouncer ] && start_bouncer
  fi
  [ -n "$tps" ] || { tps=0; failed="error: $(echo "$out" | grep -m1 -iE 'error|fatal' | cut -c1-60)"; echo "$out" | tail -3 >&2; }
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$label" "$c" "$tps" "${failed:-?}" "$p50" "$p99" "$cpu" >> "$RESULTS"
  printf '%-10s %-8s %4s clients: tps %10s failed %s p50 %s ms p99 %s ms cpu/100k %s s\n' "$target" "$label" "$c" "$tps" "${failed:-?}" "$p50" "$p99" "$cpu"
  rm -rf "$dir"
}

for proto in ${BENCH_PROTOCOLS:-simple extended prepared}; do
  for c in $CLIENTS; do
    [ "$c" -gt 600 ] || run_one postgres "$PG_PORT" - "$proto" "$proto" "$c"
    run_one pgbouncer "$BOUNCER_PORT" "$BOUNCER_PID" "$proto" "$proto" "$c"
    run_one pg_doorman "$DOORMAN_PORT" "$DOORMAN_PID" "$proto" "$proto" "$c"
  done
done
# CPU per transaction, measured again: one 15 s run per row is within about ±10 % on a loaded
# 2-core machine, so the 40 and 120-client rows are repeated BENCH_CPU_REPEAT times, the two
# poolers alternating, without latency logging; the report gives the median and the range.
cpu_one() {
  local target=$1 p=$2 pid=$3 proto=$4 c=$5
  local before after out tx tps
  before=$(cpu_ticks "$pid")
  out=$(pgbench -n -f "$WORK/select.sql" -M "$proto" -c "$c" -j 2 -T "$CPU_SECS" -h 127.0.0.1 -p "$p" -U bench bench 2>&1) || true
  after=$(cpu_ticks "$pid")
  tx=$(echo "$out" | awk -F': ' '/^number of transactions actually processed/ {split($2,a,"/"); print a[1]; exit}')
  tps=$(echo "$out" | awk '/^tps =/ {print $3; exit}')
  [ "${tx:-0}" -gt 0 ] || return 0
  printf 'cpu\t%s\t%s\t%s\t%s\t%s\n' "$target" "$proto" "$c" \
    "$(python3 -c "print(f'{($after-$before)/$TICKS/$tx*100000:.3f}')")" "$tps" >> "$RESULTS"
}
CPU_REPEAT=${BENCH_CPU_REPEAT:-5}
CPU_SECS=${BENCH_CPU_SECONDS:-8}
for proto in $(echo "${BENCH_PROTOCOLS:-simple extended}" | tr ' ' '\n' | grep -v prepared); do
  for c in 40 120; do
    for i in $(seq "$CPU_REPEAT"); do
      # Alternate which pooler goes first, so neither always runs after the other.
      if [ $((i % 2)) = 1 ]; then order="pgbouncer pg_doorman"; else order="pg_doorman pgbouncer"; fi
      for target in $order; do
        case $target in
          pgbouncer) cpu_one pgbouncer "$BOUNCER_PORT" "$BOUNCER_PID" "$proto" "$c" ;;
          pg_doorman) cpu_one pg_doorman "$DOORMAN_PORT" "$DOORMAN_PID" "$proto" "$c" ;;
        esac
      done
    done
    echo "cpu repeat $proto $c: done"
  done
done
[ "${BENCH_SKIP_EXTRAS:-0}" = 1 ] || for target in postgres pgbouncer pg_doorman; do
  case $target in postgres) p=$PG_PORT; pid=-;; pgbouncer) p=$BOUNCER_PORT; pid=$BOUNCER_PID;; pg_doorman) p=$DOORMAN_PORT; pid=$DOORMAN_PID;; esac
  run_one "$target" "$p" "$pid" churn simple 20 --connect
done
if [ "${BENCH_SKIP_EXTRAS:-0}" != 1 ]; then
  # /metrics scraped 10 times a second during a run, against the same run unscraped.
  run_one pg_doorman "$DOORMAN_PORT" "$DOORMAN_PID" unscraped simple 40
  # One scraper process (as Prometheus would be), not a process per scrape.
  python3 -c "
import time, urllib.request
while True:
    urllib.request.urlopen('http://127.0.0.1:$METRICS_PORT/metrics').read()
    time.sleep(0.1)
" &
  SCRAPER=$!
  run_one pg_doorman "$DOORMAN_PORT" "$DOORMAN_PID" scraped simple 40
  kill "$SCRAPER" 2>/dev/null || true
  for c in 40 500; do
    PGSSLMODE=require run_one pgbouncer "$BOUNCER_PORT" "$BOUNCER_PID" tls simple "$c"
    PGSSLMODE=require run_one pg_doorman "$DOORMAN_PORT" "$DOORMAN_PID" tls simple "$c"
  done
  PGSSLMODE=require run_one pgbouncer "$BOUNCER_PORT" "$BOUNCER_PID" tls-churn simple 20 --connect
  PGSSLMODE=require run_one pg_doorman "$DOORMAN_PORT" "$DOORMAN_PID" tls-churn simple 20 --connect
fi

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
idle_test() {
  local target=$1 p=$2 pid=$3
  local before after
  before=$(rss_kib "$pid")
  local fifo="$WORK/idle-$target"; mkfifo "$fifo"
  python3 "$ROOT/bench/idle_clients.py" 127.0.0.1 "$p" bench bench bench "$IDLE" < "$fifo" > "$WORK/idle-$target.out" 2>&1 &
  local py=$!
  exec 9> "$fifo"
  for _ in $(seq 600); do grep -q READY "$WORK/idle-$target.out" 2>/dev/null && break; kill -0 "$py" 2>/dev/null || break; sleep 0.1; done
  sleep 1
  after=$(rss_kib "$pid")
  exec 9>&-
  wait "$py" || true
  if grep -q READY "$WORK/idle-$target.out"; then
    local per; per=$(python3 -c "print(f'{($after-$before)*1024/$IDLE:.0f}')")
    printf 'idle\t%s\t%s\t%s\t%s\t%s\n' "$target" "$IDLE" "$before" "$after" "$per" >> "$RESULTS"
    echo "$target: $IDLE idle clients: RSS $before KiB -> $after KiB = $per bytes per client"
  else
    echo "$target: idle test failed: $(tail -1 "$WORK/idle-$target.out")"
    printf 'idle\t%s\t%s\t-\t-\tfailed\n' "$target" "$IDLE" >> "$RESULTS"
  fi
}
if [ "${BENCH_SKIP_EXTRAS:-0}" != 1 ]; then
  idle_test pgbouncer "$BOUNCER_PORT" "$BOUNCER_PID"
  idle_test pg_doorman "$DOORMAN_PORT" "$DOORMAN_PID"
fi

mkdir -p "$ROOT/bench/results"
python3 "$ROOT/bench/report.py" "$RESULTS" "$SECS" "$WORKERS" | tee "$ROOT/bench/results/latest.md"
