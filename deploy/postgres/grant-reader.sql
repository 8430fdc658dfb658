-- The board's read-only role (BOARD_DATABASE_URL): it may read every table of CityScore's
-- schema, now and after every later migration, and change nothing.
--
-- Run it in the CityScore database as the role that owns the tables (the one that runs
-- `cityscore db upgrade`), once the reader role exists, e.g. as a superuser:
--   CREATE ROLE cityscore_reader LOGIN PASSWORD '…';
--   ALTER ROLE cityscore_reader SET default_transaction_read_only = on;
-- deploy/postgres/start.sh does all of it for the local databases; docker-compose.yml runs
-- deploy/postgres/compose-init.sh.
GRANT USAGE ON SCHEMA public TO cityscore_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO cityscore_reader;
-- Tables that later migrations create (as the owner): readable too, without a new grant.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO cityscore_reader;
