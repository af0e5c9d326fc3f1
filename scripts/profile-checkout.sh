#!/usr/bin/env bash
# What one checkout costs each service's database: the whole platform (release build) on
# private databases of a PostgreSQL server, COUNT checkouts placed through the gateway
# (PARALLEL at a time), then per service database the transactions per checkout (commits and
# rollbacks, from pg_stat_database; the platform's idle polling over the same time
# subtracted) and, when the server has pg_stat_statements loaded, every statement run at
# least once per four checkouts with its calls and execution time per checkout.
#
# Usage: scripts/profile-checkout.sh [COUNT] [PARALLEL]
# Environment: PG_URL (a server where databases may be created and dropped, default
# postgres://postgres@127.0.0.1:5432/postgres; the run adds bench_<pid>_* databases and drops
# them on exit; with pg_stat_statements preloaded there, it resets its statistics);
# PG_POOL (each service's DB_MAX_CONNECTIONS, default 12); BENCH_SKIP_BUILD=1 reuses the
# release binary already built; CARGO_TARGET_DIR. Everything runs on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-200}
parallel=${2:-16}
target=${CARGO_TARGET_DIR:-target}
say() { echo "[profile] $*" >&2; }
for tool in psql curl; do
    command -v "$tool" >/dev/null || { say "needs $tool"; exit 1; }
done
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    say "building the release binary"
    cargo build --release -q -p platform
fi
platform_bin="$target/release/platform"
work=$(mktemp -d)
# Read by scripts/lib/bench.sh.
export duration=1 connections=$parallel
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

statements=0
if psql "$PG_URL" -X -Atc "select 1 from pg_extension where extname = 'pg_stat_statements'" 2>/dev/null | grep -q 1 ||
    psql "$PG_URL" -X -qc "create extension if not exists pg_stat_statements" >/dev/null 2>&1; then
    psql "$PG_URL" -X -Atc "select count(*) from pg_stat_statements" >/dev/null 2>&1 && statements=1
fi
[ "$statements" = 1 ] || say "pg_stat_statements is not loaded on that server: transactions only"

say "creating private databases ${pg_prefix}_*"
pg_platform pg
start pg 18790 DB_MAX_CONNECTIONS="${PG_POOL:-12}" "${pg_env[@]}"
read -r token product < <(prepare 18790)
if [ -z "$product" ] || [[ $product == *"{"* ]]; then
    say "the platform did not come up; its log ends:"; tail -n 20 "$work/pg.log" >&2
    exit 1
fi
# Commits plus rollbacks per database of this run.
snapshot() {
    psql "$PG_URL" -X -AtF ' ' -c "select datname, xact_commit + xact_rollback from pg_stat_database
        where datname like '${pg_prefix}\\_%' order by datname collate \"C\""
}
# Seconds since $1 (a `date +%s.%N`), without bc (not on every machine).
elapsed() { awk -v from="$1" -v to="$(date +%s.%N)" 'BEGIN { printf "%.3f", to - from }'; }
reset_statements() {
    if [ "$statements" = 1 ]; then psql "$PG_URL" -X -qAtc "select pg_stat_statements_reset()" >/dev/null; fi
}
sleep 2
say "measuring the idle platform for 10 s"
snapshot > "$work/idle0"; idle_started=$(date +%s.%N)
sleep 10
snapshot > "$work/idle1"; idle_seconds=$(elapsed "$idle_started")

body=$(printf '{"items":[{"product_id":"%s","quantity":1}],"payment":{"token":"tok_visa"},%s}' \
    "$product" '"shipping_address":{"name":"Profile","line1":"1 Road","city":"Town","postal_code":"1","country":"DE"}')
export token body
say "placing $count checkouts, $parallel at a time"
reset_statements
snapshot > "$work/run0"; run_started=$(date +%s.%N)
# shellcheck disable=SC2016 # expanded by the inner shell, from the environment
seq 1 "$count" | xargs -P "$parallel" -I{} sh -c 'curl -s -o /dev/null -w "%{http_code}\n" \
    -H "authorization: Bearer $token" -H "content-type: application/json" \
    -H "idempotency-key: $(cat /proc/sys/kernel/random/uuid)" -d "$body" \
    http://127.0.0.1:18790/api/v1/orders' > "$work/codes"
# The events of the last checkouts are still being relayed and consumed.
sleep 3
snapshot > "$work/run1"; run_seconds=$(elapsed "$run_started")
confirmed=$(curl -fs "http://127.0.0.1:18790/api/v1/orders?status=confirmed&per_page=1" \
    -H "authorization: Bearer $token" | sed -E 's/.*"total":([0-9]+).*/\1/')
ok=$(grep -c '^201$' "$work/codes" || true)
if [ "$ok" != "$count" ] || [ "$confirmed" != "$count" ]; then
    say "only $ok of $count checkouts answered 201, $confirmed confirmed:"
    sort "$work/codes" | uniq -c >&2
    exit 1
fi

echo
echo "$count checkouts, $parallel at a time, all confirmed, in $(printf %.1f "$run_seconds") s (3 s of it settling)"
echo
echo "| database | transactions per checkout |"
echo "|---|---:|"
# Sorted bytewise by PostgreSQL (collate "C"), as join reads them under LC_ALL=C.
LC_ALL=C join "$work/idle0" "$work/idle1" > "$work/idle"
LC_ALL=C join "$work/run0" "$work/run1" | LC_ALL=C join - "$work/idle" |
    awk -v n="$count" -v run="$run_seconds" -v idle="$idle_seconds" -v prefix="${pg_prefix}_pg_" '
        { idle_rate = ($5 - $4) / idle; per = ($3 - $2 - idle_rate * run) / n
          name = substr($1, length(prefix) + 1); total += per
          printf "| %s | %.2f |\n", name, per }
        END { printf "| **all** | **%.2f** |\n", total }'

if [ "$statements" = 1 ]; then
    echo
    echo "| database | calls per checkout | ms per checkout | statement |"
    echo "|---|---:|---:|---|"
    psql "$PG_URL" -X -At -F ' | ' -c "
        select regexp_replace(d.datname, '^${pg_prefix}_pg_', ''),
               round(s.calls::numeric / $count, 2), round(s.total_exec_time::numeric / $count, 3),
               left(regexp_replace(s.query, '\\s+', ' ', 'g'), 110)
        from pg_stat_statements s join pg_database d on d.oid = s.dbid
        where d.datname like '${pg_prefix}\\_%' and s.calls * 4 >= $count
        order by 1, 2 desc, 3 desc" | sed -E 's/^/| /; s/$/ |/'
fi
