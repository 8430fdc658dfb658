#!/usr/bin/env bash
# First start of docker-compose.yml's postgres (the image runs /docker-entrypoint-initdb.d/
# once, on an empty data volume, as its superuser): the roles and the database of CityScore.
#   cityscore         owns the database and its schema: `cityscore db upgrade` and the services
#   cityscore_reader  may only read (deploy/postgres/grant-reader.sql): the board
# Their passwords come from CITYSCORE_DB_PASSWORD and CITYSCORE_READER_PASSWORD (.env).
set -euo pipefail
: "${CITYSCORE_DB_PASSWORD:?}" "${CITYSCORE_READER_PASSWORD:?}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  --set=owner_password="$CITYSCORE_DB_PASSWORD" --set=reader_password="$CITYSCORE_READER_PASSWORD" <<'SQL'
CREATE ROLE cityscore LOGIN PASSWORD :'owner_password';
CREATE ROLE cityscore_reader LOGIN PASSWORD :'reader_password';
-- Read-only sessions too: even a grant given by mistake cannot make it write.
ALTER ROLE cityscore_reader SET default_transaction_read_only = on;
CREATE DATABASE cityscore OWNER cityscore;
REVOKE ALL ON DATABASE cityscore FROM PUBLIC;
GRANT CONNECT ON DATABASE cityscore TO cityscore_reader;
SQL

# As the owner, so that the default privileges cover the tables its migrations create.
{ echo "SET ROLE cityscore;"; cat /cityscore/grant-reader.sql; } \
  | psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname cityscore
