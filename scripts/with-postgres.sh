#!/usr/bin/env bash
# Runs a command beside a throwaway PostgreSQL server (its own data folder and
# port, stopped and removed at the end), whose URL is exported as
# GRADEBOOK_TEST_POSTGRES_URL. Without PostgreSQL installed, runs the command
# alone (the PostgreSQL tests then say they were skipped).
#   scripts/with-postgres.sh cargo test
set -euo pipefail

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "with-postgres: PostgreSQL is not installed; running without it" >&2
  exec "$@"
fi

dir=$(mktemp -d /tmp/gradebook-pg.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# PostgreSQL refuses to run as root: use its own account then.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$dir"

as_pg "$bindir/initdb" -D "$dir/data" -A trust -U gradebook -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
stop() {
  as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT
as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >/dev/null \
  || { cat "$dir/server.log" >&2; exit 1; }
echo "with-postgres: throwaway server on 127.0.0.1:$port" >&2

export GRADEBOOK_TEST_POSTGRES_URL="postgres://gradebook@127.0.0.1:$port/postgres"
"$@"
