#!/usr/bin/env bash
# Connection churn: a new connection per transaction (pgbench -S -C), PgBouncer (Debian
# package) against pg_doorman in one run, both with their default logging (connections and
# disconnections logged to a file). Rows:
#   md5      PGSSLMODE=disable, user with an MD5 secret
#   scram    PGSSLMODE=disable, user with a SCRAM-SHA-256 verifier (both poolers run SCRAM)
#   tls-md5  PGSSLMODE=require (self-signed RSA-2048), user with an MD5 secret
# Each row runs CHURN_REPEAT times (5), the poolers alternating which goes first; the report
# gives the median and range of connections/s and of pooler CPU seconds (utime+stime of the
# process, all threads) per 100k connections. Transaction mode, pool 20 per user. pg_doorman
# runs twice: worker_threads 1 (one thread, the shape of PgBouncer) and BENCH_WORKERS (2).
# Env: BENCH_SECONDS (12), CHURN_CLIENTS (20), CHURN_REPEAT (5), CHURN_ROWS ("md5 scram tls-md5"),
#      BENCH_WORKERS (pg_doorman worker_threads, 2), BENCH_SKIP_BUILD=1.
# Writes bench/results/churn.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECONDS:-12}
CLIENTS=${CHURN_CLIENTS:-20}
REPEAT=${CHURN_REPEAT:-5}
WORKERS=${BENCH_WORKERS:-2}
bash scripts/deps.sh --bench
[ "${BENCH_SKIP_BUILD:-0}" = 1 ] || cargo build --release --locked -p pg_doorman
source bench/lib.sh
start_postgres 200
pg_admin -c "SET password_encryption = 'scram-sha-256'" -c "CREATE ROLE bench_scram LOGIN PASSWORD 'bench'"
SCRAM=$(secret_of bench_scram)
pgbench -q -i -s 1 -h 127.0.0.1 -p "$PG_PORT" -U bench bench >/dev/null 2>&1
pg_admin -d bench -c "GRANT SELECT ON ALL TABLES IN SCHEMA public TO bench_scram"
make_tls

echo "== PgBouncer $($PGBOUNCER --version | head -1) on $BOUNCER_PORT"
write_bouncer 20 "" bench "$MD5" bench_scram "$SCRAM"
start_bouncer

# Two pg_doorman processes: worker_threads 1 (one thread, as PgBouncer) and BENCH_WORKERS.
doorman_config() {
  cat <<YAML
general:
  host: 127.0.0.1
  port: $1
  worker_threads: $2
  tls_mode: allow
  tls_certificate: "$WORK/tls.crt"
  tls_private_key: "$WORK/tls.key"
YAML
  doorman_pools 20 bench "$MD5" bench_scram "$SCRAM"
}
D1_PORT=$(port)
echo "== pg_doorman (default logging) on $D1_PORT (worker_threads 1) and $DOORMAN_PORT (worker_threads $WORKERS)"
doorman_config "$D1_PORT" 1 > "$WORK/pg_doorman-1.yaml"
"$BIN" "$WORK/pg_doorman-1.yaml" > "$WORK/pg_doorman-1.log" 2>&1 &
D1_PID=$!; PIDS+=("$D1_PID")
doorman_config "$DOORMAN_PORT" "$WORKERS" > "$WORK/pg_doorman.yaml"
start_doorman "$WORK/pg_doorman.yaml"
D1=pg_doorman-w1; DN=pg_doorman-w$WORKERS

RESULTS=$WORK/churn.tsv
: > "$RESULTS"
# churn_one TARGET PORT PID ROW
churn_one() {
  local target=$1 p=$2 pid=$3 row=$4 user=bench ssl=disable
  case $row in scram) user=bench_scram ;; tls-md5) ssl=require ;; esac
  local before after out tx tps failed
  before=$(cpu_ticks "$pid")
  out=$(PGSSLMODE=$ssl pgbench -n -S -C -c "$CLIENTS" -j 2 -T "$SECS" -h 127.0.0.1 -p "$p" -U "$user" bench 2>&1) || true
  after=$(cpu_ticks "$pid")
  tx=$(echo "$out" | awk -F': ' '/^number of transactions actually processed/ {split($2,a,"/"); print a[1]; exit}')
  tps=$(echo "$out" | awk '/^tps =/ {print $3; exit}')
  failed=$(echo "$out" | awk -F'[: ]+' '/^number of failed transactions/ {print $5; exit}')
  if [ "${tx:-0}" -eq 0 ] || echo "$out" | grep -q aborted; then
    echo "$target $row: failed: $(echo "$out" | grep -m1 -iE 'error|fatal|abort')" >&2
    return 0
  fi
  local cpu; cpu=$(python3 -c "print(f'{($after-$before)/$TICKS/$tx*100000:.3f}')")
  printf '%s\t%s\t%s\t%s\t%s\n' "$target" "$row" "$tps" "$cpu" "${failed:-0}" >> "$RESULTS"
  printf '%-10s %-8s connections/s %8.0f  cpu/100k %6s s  failed %s\n' "$target" "$row" "$tps" "$cpu" "${failed:-0}"
}
for row in ${CHURN_ROWS:-md5 scram tls-md5}; do
  for i in $(seq "$REPEAT"); do
    # Rotate which goes first, so none always runs after the same one.
    case $((i % 3)) in
      1) order="pgbouncer $D1 $DN" ;; 2) order="$D1 $DN pgbouncer" ;; *) order="$DN pgbouncer $D1" ;;
    esac
    for target in $order; do
      case $target in
        pgbouncer) churn_one pgbouncer "$BOUNCER_PORT" "$BOUNCER_PID" "$row" ;;
        "$D1") churn_one "$D1" "$D1_PORT" "$D1_PID" "$row" ;;
        "$DN") churn_one "$DN" "$DOORMAN_PORT" "$DOORMAN_PID" "$row" ;;
      esac
    done
  done
done

mkdir -p "$ROOT/bench/results"
python3 - "$RESULTS" "$SECS" "$CLIENTS" "$WORKERS" <<'PY' | tee "$ROOT/bench/results/churn.md"
import sys
path, secs, clients, workers = sys.argv[1:5]
rows = {}
for line in open(path):
    t, row, tps, cpu, failed = line.rstrip("\n").split("\t")
    rows.setdefault(row, {}).setdefault(t, []).append((float(tps), float(cpu), int(failed or 0)))
med = lambda xs: sorted(xs)[len(xs) // 2]
cell = lambda xs, f: f"{med(xs):{f}} [{min(xs):{f}}–{max(xs):{f}}]"
n = max(len(v) for r in rows.values() for v in r.values())
print(f"### Connection churn: pgbench -S -C, {clients} clients, {secs} s per run, {n} rotating runs "
      f"(median [range]); transaction mode, pool 20, default logging on all\n")
print("| row | pooler | conn/s | rate / PgBouncer | CPU s per 100k conn | CPU / PgBouncer | failed |")
print("|---|---|---|---|---|---|---|")
for row in ["md5", "scram", "tls-md5"]:
    r = rows.get(row)
    if not r or "pgbouncer" not in r:
        continue
    b = r["pgbouncer"]
    bt, bc = med([x[0] for x in b]), med([x[1] for x in b])
    for t in ["pgbouncer", "pg_doorman-w1", f"pg_doorman-w{workers}"]:
        if t not in r:
            continue
        v = r[t]
        ts, cs = [x[0] for x in v], [x[1] for x in v]
        print(f"| {row} | {t} | {cell(ts, '.0f')} | {med(ts) / bt:.2f} | {cell(cs, '.2f')} | "
              f"{med(cs) / bc:.2f} | {sum(x[2] for x in v)} |")
PY
