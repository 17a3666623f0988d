#!/usr/bin/env bash
# Starts (or reuses) the throwaway PostgreSQL cluster used by the store tests and prints its
# URL on stdout (everything else goes to stderr):
#
#   postgres://sprocket_ops:sprocket_ops_test_pw@127.0.0.1:55432/sprocket_ops_test
#
# - Installs Debian's `postgresql` package with apt-get when no initdb can be found.
# - Cluster lives in <repo>/.test-state/postgres (gitignored), owned by the `postgres` user
#   (initdb refuses to run as root); its unix socket is in the same directory, TCP listens on
#   127.0.0.1 only. fsync is off: this is a disposable test database.
# - Idempotent: when the cluster is already running this only checks the role/database.
# - Also writes <repo>/.test-state/postgres.env (`export SPROCKET_TEST_POSTGRES_URL=...`) so a
#   shell can `source` it.
#
# Usage: scripts/start-postgres.sh          start / reuse, print URL
#        scripts/start-postgres.sh stop     stop the cluster (data is kept)
# Env:   SPROCKET_TEST_PG_PORT (default 55432)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$ROOT/.test-state"
PGSTATE="$STATE/postgres"
DATA="$PGSTATE/data"
SOCKDIR="$PGSTATE/run"
LOGFILE="$PGSTATE/postgres.log"
PORT="${SPROCKET_TEST_PG_PORT:-55432}"
DB_USER=sprocket_ops
DB_NAME=sprocket_ops_test
DB_PASSWORD=sprocket_ops_test_pw # local, 127.0.0.1-only, disposable cluster
URL="postgres://$DB_USER:$DB_PASSWORD@127.0.0.1:$PORT/$DB_NAME"

log() { echo "start-postgres: $*" >&2; }
die() {
    echo "start-postgres: ERROR: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root (it switches to the postgres user with runuser)"

find_pgbin() {
    local initdb dir
    if initdb="$(command -v initdb 2>/dev/null)"; then
        dirname "$(readlink -f "$initdb")"
        return 0
    fi
    # Debian keeps the server binaries off PATH.
    dir="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
        echo "$dir"
        return 0
    fi
    return 1
}

if ! PGBIN="$(find_pgbin)"; then
    command -v apt-get >/dev/null || die "initdb not found and apt-get unavailable: install PostgreSQL (>= 13)"
    log "initdb not found: installing postgresql with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends postgresql >&2
    PGBIN="$(find_pgbin)" || die "postgresql installed but no initdb found in /usr/lib/postgresql/*/bin"
fi
id postgres >/dev/null 2>&1 || die "the 'postgres' system user does not exist (is the postgresql package installed?)"

# From / so a root-only working directory cannot upset the postgres binaries.
as_pg() { (cd / && runuser -u postgres -- "$@"); }

running() { as_pg "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

if [ "${1:-}" = "stop" ]; then
    if [ -d "$DATA" ] && running; then
        as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >&2
    else
        log "not running"
    fi
    exit 0
fi

# --- state directory, reachable by the postgres user --------------------------------------
mkdir -p "$PGSTATE"
# The repo may sit under a root-owned path: postgres needs search (x) permission on every
# ancestor of the data directory. Grant only that, only where it is missing.
dir="$STATE"
while [ "$dir" != "/" ]; do
    if ! as_pg test -x "$dir"; then
        log "granting o+x on $dir so the postgres user can reach $PGSTATE"
        chmod o+x "$dir"
    fi
    dir="$(dirname "$dir")"
done
chown postgres:postgres "$PGSTATE"
chmod 700 "$PGSTATE"
as_pg mkdir -p "$SOCKDIR"

# --- port owned by someone else? -----------------------------------------------------------
if ! running; then
    if "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
        # Something else (e.g. the cluster of another checkout) owns the port.
        if PGPASSWORD="$DB_PASSWORD" "$PGBIN/psql" -q -w -d "$URL" -c 'select 1' >/dev/null 2>&1; then
            log "port $PORT is served by another sprocket-ops test cluster that accepts our credentials: reusing it"
            printf 'export SPROCKET_TEST_POSTGRES_URL=%q\n' "$URL" >"$STATE/postgres.env"
            echo "$URL"
            exit 0
        fi
        die "port $PORT on 127.0.0.1 is already in use by another server; set SPROCKET_TEST_PG_PORT to a free port"
    fi
fi

# --- cluster ------------------------------------------------------------------------------
if [ ! -s "$DATA/PG_VERSION" ]; then
    log "creating cluster in $DATA ($("$PGBIN/postgres" --version))"
    rm -rf "$DATA"
    as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >"$PGSTATE/initdb.log" 2>&1 ||
        as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
            --encoding=UTF8 --no-locale >"$PGSTATE/initdb.log" 2>&1 ||
        {
            cat "$PGSTATE/initdb.log" >&2
            die "initdb failed"
        }
    echo "include_if_exists = 'sprocket-ops.conf'" | as_pg tee -a "$DATA/postgresql.conf" >/dev/null
fi

# Rewritten on every run so a moved checkout (new socket path) or new port still works.
as_pg tee "$DATA/sprocket-ops.conf" >/dev/null <<EOF
# Written by scripts/start-postgres.sh
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCKDIR'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
EOF

if running; then
    log "already running ($DATA)"
else
    log "starting on 127.0.0.1:$PORT (log: $LOGFILE)"
    if ! as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$LOGFILE" -w -t 60 start >&2; then
        tail -n 30 "$LOGFILE" >&2 || true
        die "pg_ctl start failed"
    fi
fi

# --- role and database (idempotent) ---------------------------------------------------------
psql_admin() {
    as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKDIR" -p "$PORT" -d postgres "$@"
}
psql_admin <<EOF >&2
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASSWORD';
  ELSE
    ALTER ROLE $DB_USER LOGIN PASSWORD '$DB_PASSWORD';
  END IF;
END
\$\$;
EOF
if [ "$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != "1" ]; then
    log "creating database $DB_NAME"
    psql_admin -c "CREATE DATABASE $DB_NAME OWNER $DB_USER" >&2
fi

# Prove the URL works over TCP with the password, as the tests will use it.
PGPASSWORD="$DB_PASSWORD" "$PGBIN/psql" -X -q -w -d "$URL" -c 'select 1' >/dev/null ||
    die "cannot connect with $URL"

printf 'export SPROCKET_TEST_POSTGRES_URL=%q\n' "$URL" >"$STATE/postgres.env"
log "ready: $URL"
echo "$URL"
