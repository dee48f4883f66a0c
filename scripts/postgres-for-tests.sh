#!/usr/bin/env bash
# Installs (from Debian's packages, when missing) and starts a local PostgreSQL for the test
# suite, with password `mlops` for the `postgres` user on 127.0.0.1:5432, and drops databases
# earlier test runs left. Then: MLOPS_TEST_DATABASE_URL=postgres://postgres:mlops@127.0.0.1/postgres
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { as_root su postgres -c "$1"; }

if ! command -v pg_lsclusters >/dev/null || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
read -r version cluster port status _ < <(pg_lsclusters -h | head -1)
if [ "$status" != online ]; then
  as_root pg_ctlcluster "$version" "$cluster" start
fi
as_postgres "psql -p $port -qc \"ALTER USER postgres PASSWORD 'mlops'\""
# Each test cluster holds a pool per service; parallel tests need more than the default 100.
if [ "$(as_postgres "psql -p $port -Atc 'SHOW max_connections'")" -lt 400 ]; then
  as_postgres "psql -p $port -qc 'ALTER SYSTEM SET max_connections = 400'"
  as_root pg_ctlcluster "$version" "$cluster" restart
fi
for db in $(as_postgres "psql -p $port -Atc \"SELECT datname FROM pg_database WHERE datname LIKE 'mlops_test_%'\""); do
  as_postgres "psql -p $port -qc 'DROP DATABASE $db'"
done
echo "PostgreSQL $version/$cluster ready on 127.0.0.1:$port"
