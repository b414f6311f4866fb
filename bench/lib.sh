# Shared set-up for bench.sh and churn.sh (sourced, not run): a throwaway PostgreSQL 15, a
# self-signed certificate, PgBouncer (Debian package) and helpers. The caller sets `set -euo
# pipefail` and cds to the repository root first.
ROOT=$PWD
PGBIN=/usr/lib/postgresql/15/bin
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
BIN=${BENCH_BIN:-$ROOT/target/release/pg_doorman}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d /tmp/pg_doorman-bench.XXXXXX)
chmod 755 "$WORK"
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
TICKS=$(getconf CLK_TCK)
PG_PORT=$(port); BOUNCER_PORT=$(port); DOORMAN_PORT=$(port); METRICS_PORT=$(port)
export PGPASSWORD=bench
# Plain unless a row asks for TLS (both poolers offer it).
export PGSSLMODE=disable

# start_postgres MAX_CONNECTIONS: initdb, md5 over TCP, role and database "bench" (password
# "bench", MD5 secret in $MD5).
start_postgres() {
  echo "== PostgreSQL on $PG_PORT"
  as_pg "$PGBIN/initdb" -U postgres --auth=trust --no-sync -D "$WORK/data" >/dev/null
  cat >> "$WORK/data/postgresql.conf" <<CONF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
max_connections = $1
shared_buffers = 256MB
fsync = off
synchronous_commit = off
password_encryption = md5
CONF
  printf 'local all all trust\nhost all all 127.0.0.1/32 md5\n' > "$WORK/data/pg_hba.conf"
  as_pg "$PGBIN/pg_ctl" -w -D "$WORK/data" -l "$WORK/postgres.log" start >/dev/null
  pg_admin -c "CREATE ROLE bench LOGIN PASSWORD 'bench'" -c "CREATE DATABASE bench OWNER bench"
  MD5=$(secret_of bench)
}
pg_admin() { psql -X -q -h "$WORK" -p "$PG_PORT" -U postgres "$@"; }
secret_of() { psql -X -At -h "$WORK" -p "$PG_PORT" -U postgres -c "SELECT rolpassword FROM pg_authid WHERE rolname = '$1'"; }

# make_tls: a self-signed RSA-2048 certificate in $WORK/tls.crt / tls.key.
make_tls() {
  openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 2 \
    -keyout "$WORK/tls.key" -out "$WORK/tls.crt" >/dev/null 2>&1
  [ "$(id -u)" -eq 0 ] && chown postgres "$WORK/tls.key" "$WORK/tls.crt"
  return 0
}

# write_bouncer POOL_SIZE EXTRA_INI [USER SECRET]...: pgbouncer.ini (transaction mode, md5,
# client TLS allowed) and userlist.txt for database "bench".
write_bouncer() {
  local size=$1 extra=$2; shift 2
  cat > "$WORK/pgbouncer.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = md5
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = $size
max_client_conn = 10000
max_db_connections = $size
client_tls_sslmode = allow
client_tls_key_file = $WORK/tls.key
client_tls_cert_file = $WORK/tls.crt
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
$extra
INI
  : > "$WORK/userlist.txt"
  while [ $# -gt 1 ]; do echo "\"$1\" \"$2\"" >> "$WORK/userlist.txt"; shift 2; done
  [ "$(id -u)" -eq 0 ] && chown postgres "$WORK"/pgbouncer.ini "$WORK"/userlist.txt
  return 0
}

# doorman_pools SIZE USER SECRET [USER SECRET]...: pg_doorman's "pools:" block for database
# "bench" (transaction mode, the PostgreSQL of start_postgres), each user with SIZE backends.
doorman_pools() {
  local size=$1; shift
  printf 'pools:\n  bench:\n    server_host: 127.0.0.1\n    server_port: %s\n    pool_mode: transaction\n    users:\n' "$PG_PORT"
  while [ $# -gt 1 ]; do
    printf '      - username: %s\n        password: "%s"\n        pool_size: %s\n' "$1" "$2" "$size"
    shift 2
  done
}

# As root, -u drops privileges without runuser/PAM, so the raised fd limit (5,000 idle clients) stays.
start_bouncer() {
  if [ "$(id -u)" -eq 0 ]; then "$PGBOUNCER" -u postgres "$WORK/pgbouncer.ini" >/dev/null 2>&1 & else "$PGBOUNCER" "$WORK/pgbouncer.ini" >/dev/null 2>&1 & fi
  sleep 1
  BOUNCER_PID=$(cat "$WORK/pgbouncer.pid"); PIDS+=("$BOUNCER_PID")
}

# start_doorman CONFIG [ARGS...]: runs the release binary, waits for its port.
start_doorman() {
  local config=$1; shift
  "$BIN" "$config" "$@" > "$WORK/pg_doorman.log" 2>&1 &
  DOORMAN_PID=$!; PIDS+=("$DOORMAN_PID")
  for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$DOORMAN_PORT") 2>/dev/null && break; sleep 0.1; done
}
