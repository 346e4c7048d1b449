#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests (Debian's postgresql, 15 or newer).
#
#   scripts/pgtest.sh start DIR   makes a cluster in DIR (an empty folder), starts it on a free
#                                 loopback port with its unix socket in DIR, and prints its URI
#                                 (postgres://drover@127.0.0.1:PORT/postgres; trust auth)
#   scripts/pgtest.sh stop DIR    stops it (the postmaster of DIR/data, by its PID) and removes DIR
#   scripts/pgtest.sh halt DIR    stops it (fast shutdown) and keeps it: a test's outage
#   scripts/pgtest.sh resume DIR  starts a halted cluster again, on the same port
#
# As root the cluster runs as the `postgres` user (PostgreSQL refuses to run as root), which
# then owns DIR. Durability is off (fsync=off): the tests do not pull the power.
# scripts/test.sh starts one for the whole run and hands it to the tests in DROVER_TEST_PG_URI.
set -euo pipefail

bindir=${DROVER_PG_BINDIR:-}
if [ -z "$bindir" ]; then
  for v in 17 16 15; do
    if [ -x "/usr/lib/postgresql/$v/bin/initdb" ]; then bindir=/usr/lib/postgresql/$v/bin; break; fi
  done
fi
[ -n "$bindir" ] || { echo "pgtest: PostgreSQL's initdb not found (scripts/deps.sh test)" >&2; exit 1; }

cmd=${1:-}
dir=${2:-}
[ -n "$dir" ] && [ -d "$dir" ] || { echo "usage: $0 start|stop|halt|resume DIR (an existing folder)" >&2; exit 2; }
dir=$(cd "$dir" && pwd)

# (from /: the caller's folder may be closed to postgres; every path here is absolute)
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

case "$cmd" in
start)
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  as_owner "$bindir/initdb" -D "$dir/data" -U drover --auth=trust -E UTF8 --locale=C.UTF-8 \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # in the cluster's configuration: a later `pg_ctl start` (a test restarting it) keeps them
  printf '%s\n' "listen_addresses = '127.0.0.1'" "port = $port" \
    "unix_socket_directories = '$dir'" "fsync = off" "full_page_writes = off" \
    "max_connections = 200" >>"$dir/data/postgresql.conf"
  as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }
  echo "postgres://drover@127.0.0.1:$port/postgres"
  ;;
halt)
  as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
  ;;
resume)
  as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }
  ;;
stop)
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null || true
  fi
  rm -rf "$dir"
  ;;
*)
  echo "usage: $0 start|stop|halt|resume DIR" >&2; exit 2 ;;
esac
