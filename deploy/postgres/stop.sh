#!/usr/bin/env bash
# Stop the local PostgreSQL cluster that deploy/postgres/start.sh runs (data is kept).
set -euo pipefail

CACHE="${CITYSCORE_CACHE:-$HOME/.cache/cityscore}"
PGDATA_DIR="${CITYSCORE_PGDATA:-$CACHE/pg-data}"

say() { echo "postgres: $*" >&2; }

BINDIR="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
if [ -n "$BINDIR" ] && [ -x "$BINDIR/pg_ctl" ]; then
  PG_CTL="$BINDIR/pg_ctl"
elif command -v pg_ctl >/dev/null 2>&1; then
  PG_CTL="$(command -v pg_ctl)"
else
  say "pg_ctl not found; nothing to stop"; exit 0
fi

if [ ! -s "$PGDATA_DIR/PG_VERSION" ]; then
  say "no cluster in $PGDATA_DIR; nothing to stop"; exit 0
fi

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

if as_pg "$PG_CTL" status -D "$PGDATA_DIR" >/dev/null 2>&1; then
  as_pg "$PG_CTL" stop -D "$PGDATA_DIR" -m fast -w -t 60 >&2
  say "stopped ($PGDATA_DIR)"
else
  say "not running ($PGDATA_DIR)"
fi
