#!/usr/bin/env bash
# Instructions per transaction (callgrind), pooler only: pg_doorman builds side by side in front
# of one throwaway PostgreSQL 15 (before/after a change of the hot path). Each build runs under
# `valgrind --tool=callgrind --instr-atstart=no`; the pool is warmed first (every backend logged
# in, statements cached), then counting is switched on with `callgrind_control -i on`, pgbench
# runs a fixed number of transactions, counting is switched off, and the total instruction count
# (Ir) is divided by the transactions (pgbench's own $CG_CLIENTS logins fall inside the window,
# the same for every build). Counts are of the pg_doorman process alone, all threads;
# valgrind runs the threads one at a time, which changes timing but not what is executed.
# Transaction mode, pool of 10, MD5, pgbench script "SELECT :aid" (as bench.sh).
# Env: CG_BINS ("name=path ..."; default "head=target/release/pg_doorman"), CG_PROTOCOLS
#      ("simple extended prepared"), CG_CLIENTS (10), CG_TX (tx per client, 500),
#      CG_RUNS (3: runs of each build per protocol, taking turns; median and minimum are
#      reported, as single runs vary: tokio's timing-dependent idle polls and parking, and
#      whether a reply arrives in one read or two, add up to ~900 Ir/tx to some runs),
#      CG_SKIP_BUILD=1 to reuse target/release/pg_doorman, CG_KEEP (a directory: each dump is
#      kept there as NAME.PROTOCOL.<time>.out, for callgrind_annotate).
# Prints a Markdown table: protocol, then the median Ir/tx of each build (min–max of its runs)
# and each later build's ratios of medians and of minima to the first. pg_doorman runs with one worker
# thread (CG_THREADS), so the count does not depend on how two schedulers' threads meet.
set -euo pipefail
cd "$(dirname "$0")/.."
BINS=${CG_BINS:-"head=target/release/pg_doorman"}
PROTOCOLS=${CG_PROTOCOLS:-"simple extended prepared"}
C=${CG_CLIENTS:-10}
TX=${CG_TX:-500}
RUNS=${CG_RUNS:-3}
bash scripts/deps.sh --bench
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }
[ "${CG_SKIP_BUILD:-0}" = 1 ] || cargo build --release --locked -p pg_doorman
source bench/lib.sh
start_postgres 100
pgbench -q -i -s 1 -h 127.0.0.1 -p "$PG_PORT" -U bench bench >/dev/null 2>&1
printf '\\set aid random(1, 100000)\nSELECT :aid;\n' > "$WORK/select.sql"
chmod 644 "$WORK/select.sql"

# counted PORT PID PROTOCOL NAME: warms the pool, counts one pgbench run, prints Ir per transaction.
counted() {
  local p=$1 pid=$2 proto=$3 name=$4 out
  for _ in $(seq 300); do (echo > "/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.2; done
  pgbench -n -f "$WORK/select.sql" -M "$proto" -c "$C" -j 2 -t 50 -h 127.0.0.1 -p "$p" -U bench bench >/dev/null 2>&1
  timeout 120 callgrind_control -i on "$pid" >/dev/null 2>&1
  out=$(pgbench -n -f "$WORK/select.sql" -M "$proto" -c "$C" -j 2 -t "$TX" -h 127.0.0.1 -p "$p" -U bench bench 2>&1)
  timeout 120 callgrind_control -i off "$pid" >/dev/null 2>&1
  grep -q "number of failed transactions: 0" <<<"$out" || { echo "pgbench failed: $out" >&2; cat "$WORK"/cg*.log >&2; exit 1; }
  kill -INT "$pid"
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  # The dump is written as the process exits: wait until it is complete.
  for _ in $(seq 300); do grep -qs "^totals:" "$WORK"/cg.out.* && break; sleep 0.2; done
  local ir
  ir=$(awk '/^(summary|totals):/ {s += $2} END {print s + 0}' "$WORK"/cg.out.*)
  if [ -n "${CG_KEEP:-}" ]; then mkdir -p "$CG_KEEP"; cat "$WORK"/cg.out.* > "$CG_KEEP/$name.$proto.$(date +%s%N).out"; fi
  rm -f "$WORK"/cg.out.*
  echo $(( ir / (C * TX) ))
}

# under_doorman BIN PROTOCOL NAME: Ir/tx of one pg_doorman build.
under_doorman() {
  local port; port=$(port)
  cat > "$WORK/cg.yaml" <<YAML
general:
  host: 127.0.0.1
  port: $port
  worker_threads: ${CG_THREADS:-1}
  log_client_connections: false
  log_client_disconnections: false
YAML
  doorman_pools "$C" bench "$MD5" >> "$WORK/cg.yaml"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg.out.%p" \
    "$1" "$WORK/cg.yaml" -l warn > "$WORK/cg.log" 2>&1 &
  local pid=$!
  counted "$port" "$pid" "$2" "$3"
}

header="| protocol |"; rule="|---|"
for b in $BINS; do header+=" ${b%%=*} Ir/tx, median (min–max) |"; rule+="---|"; done
read -r -a builds <<<"$BINS"
for b in "${builds[@]:1}"; do header+=" ${b%%=*} / ${builds[0]%%=*}: medians, minima |"; rule+="---|"; done
echo "$header"; echo "$rule"
# median LIST...: the middle value (lower middle for an even count).
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
for proto in $PROTOCOLS; do
  declare -A runs=()
  # Builds take turns within each round, so a slow spell of the machine falls on all of them.
  for _ in $(seq "$RUNS"); do
    for b in $BINS; do runs[$b]+=" $(under_doorman "${b#*=}" "$proto" "${b%%=*}")"; done
  done
  row="| $proto |"; meds=(); mins=()
  for b in $BINS; do
    read -r -a v <<<"${runs[$b]}"
    m=$(median "${v[@]}"); meds+=("$m")
    lo=$(printf '%s\n' "${v[@]}" | sort -n | head -1); hi=$(printf '%s\n' "${v[@]}" | sort -n | tail -1)
    mins+=("$lo"); row+=" $m ($lo–$hi) |"
  done
  for i in $(seq 1 $((${#meds[@]} - 1))); do
    row+=" $(awk -v a="${meds[$i]}" -v b="${meds[0]}" -v c="${mins[$i]}" -v d="${mins[0]}" \
      'BEGIN {printf "%.3f, %.3f", a / b, c / d}') |"
  done
  unset runs
  echo "$row"
done
