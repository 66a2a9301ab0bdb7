#!/usr/bin/env bash
# This machine's PostgreSQL as the store tests' scratch database, idempotently:
#   1. `apt-get install postgresql` when no cluster is installed,
#   2. start the newest cluster (`pg_ctlcluster <version> main start`) unless it is online,
#   3. create the role `rightsize` (password `rightsize`) and the database `rightsize_test`
#      it owns, unless they exist.
# Prints the URL for STORE_TEST_POSTGRES_URL on stdout (everything else goes to stderr).
# Usage: export STORE_TEST_POSTGRES_URL="$(scripts/postgres.sh)"
set -euo pipefail
ROLE=rightsize PASSWORD=rightsize DB=rightsize_test
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
log() { echo "postgres: $*" >&2; }

if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
  log "installing postgresql"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
fi
# Newest installed version; create its `main` cluster if the package did not.
version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { found = 1 } END { exit !found }'; then
  log "creating cluster $version/main"
  $sudo pg_createcluster "$version" main >&2
fi
status="$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { print $4 }')"
if [ "$status" != "online" ]; then
  log "starting cluster $version/main"
  $sudo pg_ctlcluster "$version" main start >&2
fi
port="$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { print $3 }')"

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}
psql_admin() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$port" -tAc "$1"; }
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != "1" ]; then
  log "creating role $ROLE"
  psql_admin "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'"
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != "1" ]; then
  log "creating database $DB"
  psql_admin "CREATE DATABASE $DB OWNER $ROLE"
fi
url="postgres://$ROLE:$PASSWORD@127.0.0.1:$port/$DB"
# The tests connect over TCP with the password: check that they can.
PGPASSWORD="$PASSWORD" psql -X -q -h 127.0.0.1 -p "$port" -U "$ROLE" -d "$DB" -tAc "SELECT 1" >/dev/null \
  || { log "cannot connect as $ROLE to $DB on 127.0.0.1:$port"; exit 1; }
echo "$url"
