#!/usr/bin/env bash
# The Debian package, end to end on this machine: builds it with `cargo deb`, installs it with
# dpkg, checks the files, starts pg_doorman from the installed config without systemd
# (`pg_doorman /etc/pg_doorman/pg_doorman.yaml`), serves the admin console and (with a
# throwaway PostgreSQL on 127.0.0.1:5432 when that port is free) pgbench through it, then
# removes and purges the package and checks nothing of it is left. Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/lib/postgresql/15/bin:$HOME/.cargo/bin:$PATH"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked --version 3.8.0
cargo deb -p pg_doorman --locked
deb="$(ls -t target/debian/pg-doorman_*.deb | head -1)"
echo "package: $deb ($(du -h "$deb" | cut -f1))"
for port in 6432 9127; do
  if (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use: the packaged config listens there" >&2
    exit 1
  fi
done

work="$(mktemp -d)"
pg_pid=""
dm_pid=""
cleanup() {
  [ -n "$dm_pid" ] && kill "$dm_pid" 2>/dev/null || true
  if [ -n "$pg_pid" ]; then
    runuser -u postgres -- pg_ctl -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  fi
  dpkg -s pg-doorman >/dev/null 2>&1 && $SUDO dpkg -P pg-doorman >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

$SUDO dpkg -i "$deb"
for f in /usr/bin/pg_doorman /etc/pg_doorman/pg_doorman.yaml /lib/systemd/system/pg_doorman.service \
         /usr/share/pg_doorman/grafana/pg_doorman.json /usr/share/doc/pg_doorman/configuration.md; do
  [ -e "$f" ] || { echo "missing after install: $f" >&2; exit 1; }
done
/usr/bin/pg_doorman --version
/usr/bin/pg_doorman -t /etc/pg_doorman/pg_doorman.yaml

# A PostgreSQL for the packaged pool (postgres, user app) when 5432 is free.
if ! (echo > /dev/tcp/127.0.0.1/5432) 2>/dev/null && [ "$(id -u)" -eq 0 ]; then
  chown postgres "$work"
  runuser -u postgres -- initdb -D "$work/pg" -U postgres --auth=trust >/dev/null
  runuser -u postgres -- pg_ctl -D "$work/pg" -l "$work/pg.log" -w \
    -o "-c listen_addresses=127.0.0.1 -c port=5432 -c unix_socket_directories=$work" start >/dev/null
  pg_pid=started
  psql -X -q -h 127.0.0.1 -p 5432 -U postgres -d postgres \
    -c "CREATE ROLE app LOGIN PASSWORD 'change_me'" -c "GRANT CREATE ON SCHEMA public TO app"
fi

/usr/bin/pg_doorman /etc/pg_doorman/pg_doorman.yaml >"$work/doorman.log" 2>&1 &
dm_pid=$!
for _ in $(seq 100); do
  (echo > /dev/tcp/127.0.0.1/6432) 2>/dev/null && break
  kill -0 "$dm_pid" 2>/dev/null || { cat "$work/doorman.log"; exit 1; }
  sleep 0.1
done
version="$(PGPASSWORD=change_me psql -X -At -h 127.0.0.1 -p 6432 -U admin -d pgdoorman -c 'SHOW VERSION')"
echo "admin console: $version"
metrics="$(curl -fsS http://127.0.0.1:9127/metrics)"
grep -q '^pg_doorman_build_info' <<<"$metrics" || { echo "no pg_doorman_build_info on /metrics" >&2; exit 1; }
if [ -n "$pg_pid" ]; then
  export PGPASSWORD=change_me
  pgbench -i -q -h 127.0.0.1 -p 6432 -U app postgres
  out="$(pgbench -n -S -c 4 -T 3 -h 127.0.0.1 -p 6432 -U app postgres)"
  echo "$out" | grep -E '^(tps|number of failed)'
  echo "$out" | grep -q '^number of failed transactions: 0 ' || { echo "$out"; exit 1; }
  unset PGPASSWORD
fi
kill -TERM "$dm_pid"
wait "$dm_pid" || true
dm_pid=""

$SUDO dpkg -r pg-doorman >/dev/null
[ ! -e /usr/bin/pg_doorman ] || { echo "/usr/bin/pg_doorman left after remove" >&2; exit 1; }
[ -e /etc/pg_doorman/pg_doorman.yaml ] || { echo "remove must keep the conffile" >&2; exit 1; }
$SUDO dpkg -P pg-doorman >/dev/null
for f in /etc/pg_doorman /usr/share/pg_doorman /usr/share/doc/pg_doorman /lib/systemd/system/pg_doorman.service; do
  [ ! -e "$f" ] || { echo "left after purge: $f" >&2; exit 1; }
done
echo "package test: installed, served, removed and purged cleanly"
