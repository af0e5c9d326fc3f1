#!/usr/bin/env bash
# Checkout benchmark: the whole platform (release build, behind the gateway), measured
# interleaved in one run, on the backend BACKEND names:
#   - orders:   POST /api/v1/orders, the full saga (price lookup, reserve, charge, commit,
#               confirm; outbox events), one product per order;
#   - payments: POST /api/v1/payments, one sandbox charge alone (the saga's payment step, as
#               a baseline for what the saga adds);
#   - BACKEND=sqlite (default), embedded SQLite:
#     orders-pool25: the orders run against a second platform whose services keep 25 SQLite
#               connections each (DB_MAX_CONNECTIONS=25, the PostgreSQL default) instead of 4,
#               the evidence for the SQLite pool default.
#   - BACKEND=postgres, every service its own private database on the PostgreSQL server of
#     PG_URL (the embedded event bus, as without REDIS_URL):
#     pgbench:  `pgbench -N` (scale 10, a private database of the same server) with as many
#               clients as wrk has connections and for as long, after each round's wrk runs,
#               as the yardstick of what that server does on this machine in this run: the
#               checkout's target is at least 240 orders/s or 1/15 of pgbench's transactions
#               per second, with p99 under 250 ms. No pool variant here: 25 connections is
#               PostgreSQL's default already, and no service has more transactions in flight
#               than wrk has connections.
# Every request carries a fresh Idempotency-Key (and a fresh order id). Prints requests/s, p50
# and p99 for each, the orders/payments ratio (postgres: pgbench's transactions per checkout,
# and the targets met or not), and checks afterwards that every order the run placed was
# confirmed.
#
# Usage: [BACKEND=sqlite|postgres] scripts/bench-orders.sh [SECONDS_PER_RUN] [ROUNDS] [CONNECTIONS]
# Environment: BACKEND (default sqlite); PG_URL (postgres: a server where databases may be
# created and dropped, default postgres://postgres@127.0.0.1:5432/postgres; the run adds
# bench_<pid>_* databases and drops them on exit, and changes nothing else there);
# PG_POOL (postgres: each service's DB_MAX_CONNECTIONS, default 12); BENCH_SKIP_BUILD=1
# reuses the release binary already built; CARGO_TARGET_DIR.
# Installs wrk from Debian's packages when missing; postgres needs psql and pgbench.
# Everything runs on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
rounds=${2:-3}
connections=${3:-16}
target=${CARGO_TARGET_DIR:-target}
backend=${BACKEND:-sqlite}
say() { echo "[bench] $*" >&2; }

case $backend in
sqlite) ;;
postgres)
    for tool in psql pgbench; do
        command -v "$tool" >/dev/null || { say "BACKEND=postgres needs $tool"; exit 1; }
    done
    ;;
*) say "BACKEND is sqlite or postgres, not '$backend'"; exit 2 ;;
esac

# shellcheck source=scripts/lib/wrk.sh
source scripts/lib/wrk.sh
need_wrk
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    say "building the release binary"
    cargo build --release -q -p platform
fi
platform_bin="$target/release/platform"

work=$(mktemp -d)

# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

if [ "$backend" = sqlite ]; then
    say "starting two platforms"
    start default 18710
    start pool25 18720 DB_MAX_CONNECTIONS=25
    read -r token product < <(prepare 18710)
    read -r token25 product25 < <(prepare 18720)
    kinds="orders orders-pool25 payments"
    say "platforms up; product $product"
else
    if ! server=$(psql "$PG_URL" -X -Atc 'show server_version' 2>&1); then
        say "PostgreSQL at PG_URL is not reachable: $server"
        exit 1
    fi
    server=${server%% *}
    # The pools keep the connections they opened under load while pgbench runs; beyond the
    # server's max_connections checkouts or pgbench fail rather than slow down, so say so
    # first.
    read -r max_conns in_use < <(psql "$PG_URL" -X -AtF ' ' -c \
        "select current_setting('max_connections'), (select count(*) from pg_stat_activity)")
    needed=$((6 * ${PG_POOL:-12} + connections + 2))
    if [ "$needed" -gt $((max_conns - in_use)) ]; then
        say "warning: up to $needed connections may be needed (6 pools of ${PG_POOL:-12}, pgbench's $connections), the server has $((max_conns - in_use)) free"
    fi
    say "creating private databases ${pg_prefix}_* (PostgreSQL $server)"
    pg_platform pg
    pg_create pgbench
    pgbench_url=$(pg_url_for "${pg_prefix}_pgbench")
    say "starting the platform on PostgreSQL"
    # Six services at the default pool of 25 may hold 150 connections, past the server's usual
    # max_connections of 100 with pgbench's on top ("too many clients" mid-run). 12 each is
    # more than the 16 checkouts in flight need per service at any step, and leaves room.
    start pg 18710 DB_MAX_CONNECTIONS="${PG_POOL:-12}" "${pg_env[@]}"
    # While the platform migrates its databases.
    say "initialising pgbench (scale 10)"
    if ! pgbench -i -s 10 -q "$pgbench_url" > "$work/pgbench-init.log" 2>&1; then
        say "pgbench -i failed:"; cat "$work/pgbench-init.log" >&2
        exit 1
    fi
    read -r token product < <(prepare 18710)
    if [ -z "$product" ] || [[ $product == *"{"* ]]; then
        say "the platform did not come up; its log ends:"; tail -n 20 "$work/pg.log" >&2
        exit 1
    fi
    kinds="orders payments pgbench"
    say "platform up; product $product"
fi
base="http://127.0.0.1:18710"

write_post_lua

results="$work/results"
for round in $(seq 1 "$rounds"); do
    say "round $round/$rounds (${duration}s each, $connections connections)"
    if [ "$backend" = sqlite ]; then
        {
            run orders orders 18710 "$token" "$product"
            run orders-pool25 orders 18720 "$token25" "$product25"
            run payments payments 18710 "$token" "$product"
        } >> "$results"
    else
        {
            run orders orders 18710 "$token" "$product"
            run payments payments 18710 "$token" "$product"
            run_pgbench pgbench "$pgbench_url"
        } >> "$results"
    fi
done

declare -A RPS P50 P99 BAD
for kind in $kinds; do
    RPS[$kind]=$(awk -v k="$kind" '$1==k {print $2}' "$results" | median)
    P50[$kind]=$(awk -v k="$kind" '$1==k {print $3}' "$results" | median)
    P99[$kind]=$(awk -v k="$kind" '$1==k {print $4}' "$results" | median)
    BAD[$kind]=$(awk -v k="$kind" '$1==k {s+=$5} END {print s+0}' "$results")
done
confirmed=$(curl -fs "$base/api/v1/orders?status=confirmed&per_page=1" -H "authorization: Bearer $token" | sed -E 's/.*"total":([0-9]+).*/\1/')
all=$(curl -fs "$base/api/v1/orders?per_page=1" -H "authorization: Bearer $token" | sed -E 's/.*"total":([0-9]+).*/\1/')
echo
echo "| request | requests/s | p50 (ms) | p99 (ms) | non-2xx |"
echo "|---|---:|---:|---:|---:|"
printf "| POST /api/v1/orders (checkout saga) | %.0f | %s | %s | %s |\n" "${RPS[orders]}" "${P50[orders]}" "${P99[orders]}" "${BAD[orders]}"
if [ "$backend" = sqlite ]; then
    printf "| POST /api/v1/orders, 25 SQLite connections per service | %.0f | %s | %s | %s |\n" "${RPS[orders-pool25]}" "${P50[orders-pool25]}" "${P99[orders-pool25]}" "${BAD[orders-pool25]}"
    printf "| POST /api/v1/payments (one charge) | %.0f | %s | %s | %s |\n" "${RPS[payments]}" "${P50[payments]}" "${P99[payments]}" "${BAD[payments]}"
    echo
    awk -v o="${RPS[orders]}" -v p="${RPS[payments]}" -v q="${RPS[orders-pool25]}" -v a="${P99[orders]}" -v b="${P99[orders-pool25]}" \
        'BEGIN { printf "throughput orders/payments: %.2f\nSQLite pool 4 vs 25: throughput %.2f, p99 %.2f\n", o/p, o/q, a/b }'
    echo "orders placed during the run: $all, confirmed: $confirmed"
    echo "(median of $rounds rounds; wrk -t2 -c$connections -d${duration}s through the gateway; embedded SQLite; $(nproc) cores shared by wrk and the platform)"
    exit 0
fi
printf "| POST /api/v1/payments (one charge) | %.0f | %s | %s | %s |\n" "${RPS[payments]}" "${P50[payments]}" "${P99[payments]}" "${BAD[payments]}"
printf "| pgbench -N (transactions/s; failed in the last column) | %.0f | %s | %s | %s |\n" "${RPS[pgbench]}" "${P50[pgbench]}" "${P99[pgbench]}" "${BAD[pgbench]}"
echo
# Each round's ratio too: the load from elsewhere on the machine drifts between rounds, and
# within a round it hits both sides alike.
per_round=$(awk '$1=="orders" {o[++i]=$2} $1=="pgbench" {g[++j]=$2} END {for (r=1; r<=j; r++) if (o[r] > 0) print g[r]/o[r]}' "$results" | median)
awk -v o="${RPS[orders]}" -v p="${RPS[payments]}" -v g="${RPS[pgbench]}" -v l="${P99[orders]}" -v r="$per_round" 'BEGIN {
    printf "throughput orders/payments: %.2f\n", o/p
    printf "pgbench -N transactions per checkout: %.1f (pgbench tps / checkouts per second; median of the per-round ratios: %.1f)\n", g/o, r
    rate = (o >= 240); share = (o * 15 >= g); tail = (l < 250)
    printf "target: >= 240 checkouts/s: %s (%.0f/s)\n", rate ? "met" : "not met", o
    printf "target: >= 1/15 of pgbench -N (%.0f/s): %s\n", g/15, share ? "met" : "not met"
    printf "target: p99 < 250 ms: %s (%s ms)\n", tail ? "met" : "not met", l
    printf "target (240/s or 1/15 of pgbench, and p99 < 250 ms): %s\n", ((rate || share) && tail) ? "met" : "not met"
}'
echo "orders placed during the run: $all, confirmed: $confirmed"
echo "(median of $rounds rounds; each round wrk -t2 -c$connections -d${duration}s through the gateway, then pgbench -N -c$connections -j$((connections < 2 ? connections : 2)) -T$duration (scale 10); PostgreSQL $server, shared server, one private database per service, embedded event bus; $(nproc) cores shared by wrk, pgbench, the platform and PostgreSQL)"
