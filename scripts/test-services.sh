#!/usr/bin/env bash
# Makes sure the PostgreSQL and Redis servers the integration suites use are up on 127.0.0.1:
# starts them when they are down, installs them from Debian's packages when they are missing.
# Prints the TEST_DATABASE_URL and TEST_REDIS_URL to use.
#
# TEST_POSTGRES_PORT / TEST_REDIS_PORT point it at servers on other ports, such as those of
# `docker-compose -f docker-compose.test.yml up -d`; it then only waits for them.
set -euo pipefail

PG_PORT=${TEST_POSTGRES_PORT:-5432}
REDIS_PORT=${TEST_REDIS_PORT:-6379}

say() { echo "[test-services] $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        say "need root to run: $*"; return 1; fi
}

pg_up() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }

wait_for() {
    local what=$1 check=$2
    for _ in $(seq 1 60); do
        if $check; then say "$what is up"; return 0; fi
        sleep 0.5
    done
    say "$what did not come up within 30 s"; return 1
}

ensure_postgres() {
    if command -v pg_isready >/dev/null && pg_up; then say "PostgreSQL is up"; return; fi
    if [ "$PG_PORT" != 5432 ]; then wait_for "PostgreSQL on port $PG_PORT" pg_up; return; fi
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
        say "PostgreSQL is not installed: installing it from Debian's packages"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        # Tests connect as `postgres` over TCP without a password, as on the CI machines.
        for hba in /etc/postgresql/*/main/pg_hba.conf; do
            as_root sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
        done
    fi
    local version
    version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf "%f\n" | sort -V | tail -n 1)
    say "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for PostgreSQL pg_up
}

ensure_redis() {
    if command -v redis-cli >/dev/null && redis_up; then say "Redis is up"; return; fi
    if [ "$REDIS_PORT" != 6379 ]; then wait_for "Redis on port $REDIS_PORT" redis_up; return; fi
    if ! command -v redis-server >/dev/null; then
        say "Redis is not installed: installing it from Debian's packages"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    fi
    say "starting Redis"
    as_root mkdir -p /var/lib/redis /var/log/redis
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for Redis redis_up
}

ensure_postgres
ensure_redis
echo "TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres"
echo "TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
