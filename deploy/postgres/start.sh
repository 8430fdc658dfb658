#!/usr/bin/env bash
# Start a local PostgreSQL cluster for CityScore development and tests (no Docker).
#
#   deploy/postgres/start.sh            # prints the DATABASE_URL on stdout
#   PGPORT=5433 deploy/postgres/start.sh
#
# - installs PostgreSQL from Debian packages when initdb/pg_ctl are missing (as root);
# - creates the cluster once in $CITYSCORE_PGDATA
#   (default ${CITYSCORE_CACHE:-$HOME/.cache/cityscore}/pg-data), run by the
#   `postgres` OS user when invoked as root (initdb refuses root);
# - listens on 127.0.0.1:${PGPORT:-5432} only (plus a unix socket inside the data dir);
# - ensures role cityscore/cityscore and databases cityscore, cityscore_test and cityscore_e2e
#   (owned by it), and the read-only role cityscore_reader/cityscore_reader of the board
#   (BOARD_DATABASE_URL), which may SELECT every table of those databases, now and after
#   later migrations (deploy/postgres/grant-reader.sql), and nothing else;
# - idempotent: a second run only makes sure it is running.
# Progress goes to stderr; stdout carries only the URL, so
#   export DATABASE_URL=$(deploy/postgres/start.sh)
# works.
set -euo pipefail

PORT="${PGPORT:-5432}"
CACHE="${CITYSCORE_CACHE:-$HOME/.cache/cityscore}"
PGDATA_DIR="${CITYSCORE_PGDATA:-$CACHE/pg-data}"
LOGFILE="$PGDATA_DIR/postgres.log"
ROLE=cityscore
PASSWORD=cityscore
READER=cityscore_reader
READER_PASSWORD=cityscore_reader
GRANTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/grant-reader.sql"
DATABASES=(cityscore cityscore_test cityscore_e2e)

say() { echo "postgres: $*" >&2; }
die() { echo "postgres: ERROR: $*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

find_bindir() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
    echo "$dir"; return 0
  fi
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"; return 0
  fi
  return 1
}

install_postgres() {
  is_root || die "PostgreSQL server binaries (initdb, pg_ctl) are missing; install the 'postgresql' package or run this script as root"
  command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is missing and apt-get is not available; install PostgreSQL yourself"
  # Our cluster lives in the cache; keep the package from creating (and starting)
  # its own main cluster on 5432.
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
  fi
  local apt_opts=(-y -q -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef)
  say "installing PostgreSQL from Debian packages ..."
  if ! DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" postgresql >&2; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" postgresql >&2
  fi
}

BINDIR="$(find_bindir || true)"
if [ -z "$BINDIR" ]; then
  install_postgres
  BINDIR="$(find_bindir)" || die "PostgreSQL installed but initdb/pg_ctl not found"
fi

# Who runs the server: ourselves, or the postgres OS user when we are root.
if is_root; then
  RUN_AS=postgres
  if ! id "$RUN_AS" >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash "$RUN_AS"
  fi
else
  RUN_AS="$(id -un)"
fi

as_pg() {
  # cd / so the postgres user is never left in a directory it cannot read.
  if is_root; then
    (cd / && runuser -u "$RUN_AS" -- "$@")
  else
    (cd / && "$@")
  fi
}

# The postgres user must be able to reach the data dir (e.g. /root is 0700).
grant_traverse() {
  # Walk from / down so each directory is judged with its parents already reachable.
  local path="" part
  local IFS=/
  for part in $1; do
    [ -n "$part" ] || continue
    path="$path/$part"
    [ -d "$path" ] || break
    if ! runuser -u "$RUN_AS" -- test -x "$path" 2>/dev/null; then
      if command -v setfacl >/dev/null 2>&1 && setfacl -m "u:$RUN_AS:x" "$path" 2>/dev/null; then
        say "granted $RUN_AS traverse (acl u:$RUN_AS:x) on $path"
      else
        chmod o+x "$path"
        say "granted traverse (chmod o+x) on $path so $RUN_AS can reach the data dir"
      fi
    fi
  done
}

PG_CTL="$BINDIR/pg_ctl"
PSQL="$BINDIR/psql"
[ -x "$PSQL" ] || PSQL="$(command -v psql)" || die "psql not found"

mkdir -p "$(dirname "$PGDATA_DIR")"
PGDATA_DIR="$(cd "$(dirname "$PGDATA_DIR")" && pwd)/$(basename "$PGDATA_DIR")"
LOGFILE="$PGDATA_DIR/postgres.log"

if is_root; then
  grant_traverse "$(dirname "$PGDATA_DIR")"
fi

# 1. Create the cluster once.
if [ ! -s "$PGDATA_DIR/PG_VERSION" ]; then
  say "creating cluster in $PGDATA_DIR"
  mkdir -p "$PGDATA_DIR"
  if is_root; then chown "$RUN_AS": "$PGDATA_DIR"; fi
  chmod 700 "$PGDATA_DIR"
  as_pg "$BINDIR/initdb" -D "$PGDATA_DIR" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 >&2 \
    || as_pg "$BINDIR/initdb" -D "$PGDATA_DIR" --encoding=UTF8 --locale=C \
         --auth-local=peer --auth-host=scram-sha-256 >&2
fi

running_port() {
  # Line 4 of postmaster.pid is the port of a running server.
  if as_pg "$PG_CTL" status -D "$PGDATA_DIR" >/dev/null 2>&1; then
    sed -n 4p "$PGDATA_DIR/postmaster.pid"
  fi
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# 2. Start it unless it runs already.
ACTUAL_PORT="$(running_port || true)"
if [ -n "$ACTUAL_PORT" ]; then
  [ "$ACTUAL_PORT" = "$PORT" ] || say "already running on port $ACTUAL_PORT (PGPORT=$PORT ignored; stop it first to move it)"
  PORT="$ACTUAL_PORT"
  say "already running on 127.0.0.1:$PORT ($PGDATA_DIR)"
else
  if port_in_use "$PORT"; then
    die "127.0.0.1:$PORT is taken by another server; pick a free port, e.g. PGPORT=5433 $0"
  fi
  say "starting on 127.0.0.1:$PORT (log: $LOGFILE)"
  as_pg "$PG_CTL" start -D "$PGDATA_DIR" -l "$LOGFILE" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories='$PGDATA_DIR'" >&2 \
    || { tail -n 30 "$LOGFILE" >&2 || true; die "PostgreSQL did not start"; }
fi

# 3. Role and databases (as the cluster's superuser, over the socket in the data dir).
sql() { as_pg "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$PGDATA_DIR" -p "$PORT" -d postgres -tAc "$1"; }

if [ "$(sql "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != "1" ]; then
  say "creating role $ROLE"
  sql "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'"
fi
if [ "$(sql "SELECT 1 FROM pg_roles WHERE rolname = '$READER'")" != "1" ]; then
  say "creating read-only role $READER"
  sql "CREATE ROLE $READER LOGIN PASSWORD '$READER_PASSWORD'"
fi
# Read-only sessions too: even a grant given by mistake cannot make it write.
sql "ALTER ROLE $READER SET default_transaction_read_only = on"
for db in "${DATABASES[@]}"; do
  if [ "$(sql "SELECT 1 FROM pg_database WHERE datname = '$db'")" != "1" ]; then
    say "creating database $db"
    sql "CREATE DATABASE $db OWNER $ROLE"
  fi
  # As the owner, so that the default privileges cover the tables its migrations create.
  (echo "SET ROLE $ROLE;"; cat "$GRANTS") \
    | as_pg "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$PGDATA_DIR" -p "$PORT" -d "$db" >/dev/null
done

echo "postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PORT/cityscore_test"
