#!/usr/bin/env bash
# Checkout benchmark: the whole platform (release build, embedded SQLite, behind the gateway),
# measured interleaved in one run:
#   - orders:   POST /api/v1/orders, the full saga (price lookup, reserve, charge, commit,
#               confirm; outbox events), one product per order;
#   - payments: POST /api/v1/payments, one sandbox charge alone (the saga's payment step, as
#               a baseline for what the saga adds);
#   - orders-pool25: the orders run against a second platform whose services keep 25 SQLite
#               connections each (DB_MAX_CONNECTIONS=25, the PostgreSQL default) instead of 4,
#               the evidence for the SQLite pool default.
# Every request carries a fresh Idempotency-Key (and a fresh order id). Prints requests/s, p50
# and p99 for each, the orders/payments ratio, and checks afterwards that every order the run
# placed was confirmed.
#
# Usage: scripts/bench-orders.sh [SECONDS_PER_RUN] [ROUNDS] [CONNECTIONS]
# Installs wrk from Debian's packages when missing; BENCH_SKIP_BUILD=1 reuses the release
# binary already built. Everything runs on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
rounds=${2:-3}
connections=${3:-16}
target=${CARGO_TARGET_DIR:-target}
say() { echo "[bench] $*" >&2; }

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

say "starting two platforms"
start default 18710
start pool25 18720 DB_MAX_CONNECTIONS=25
read -r token product < <(prepare 18710)
read -r token25 product25 < <(prepare 18720)
base="http://127.0.0.1:18710"
say "platforms up; product $product"

write_post_lua

results="$work/results"
for round in $(seq 1 "$rounds"); do
    say "round $round/$rounds (${duration}s each, $connections connections)"
    {
        run orders orders 18710 "$token" "$product"
        run orders-pool25 orders 18720 "$token25" "$product25"
        run payments payments 18710 "$token" "$product"
    } >> "$results"
done

declare -A RPS P50 P99 BAD
for kind in orders orders-pool25 payments; do
    RPS[$kind]=$(awk -v k=$kind '$1==k {print $2}' "$results" | median)
    P50[$kind]=$(awk -v k=$kind '$1==k {print $3}' "$results" | median)
    P99[$kind]=$(awk -v k=$kind '$1==k {print $4}' "$results" | median)
    BAD[$kind]=$(awk -v k=$kind '$1==k {s+=$5} END {print s+0}' "$results")
done
confirmed=$(curl -fs "$base/api/v1/orders?status=confirmed&per_page=1" -H "authorization: Bearer $token" | sed -E 's/.*"total":([0-9]+).*/\1/')
all=$(curl -fs "$base/api/v1/orders?per_page=1" -H "authorization: Bearer $token" | sed -E 's/.*"total":([0-9]+).*/\1/')
echo
echo "| request | requests/s | p50 (ms) | p99 (ms) | non-2xx |"
echo "|---|---:|---:|---:|---:|"
printf "| POST /api/v1/orders (checkout saga) | %.0f | %s | %s | %s |\n" "${RPS[orders]}" "${P50[orders]}" "${P99[orders]}" "${BAD[orders]}"
printf "| POST /api/v1/orders, 25 SQLite connections per service | %.0f | %s | %s | %s |\n" "${RPS[orders-pool25]}" "${P50[orders-pool25]}" "${P99[orders-pool25]}" "${BAD[orders-pool25]}"
printf "| POST /api/v1/payments (one charge) | %.0f | %s | %s | %s |\n" "${RPS[payments]}" "${P50[payments]}" "${P99[payments]}" "${BAD[payments]}"
echo
awk -v o="${RPS[orders]}" -v p="${RPS[payments]}" -v q="${RPS[orders-pool25]}" -v a="${P99[orders]}" -v b="${P99[orders-pool25]}" \
    'BEGIN { printf "throughput orders/payments: %.2f\nSQLite pool 4 vs 25: throughput %.2f, p99 %.2f\n", o/p, o/q, a/b }'
echo "orders placed during the run: $all, confirmed: $confirmed"
echo "(median of $rounds rounds; wrk -t2 -c$connections -d${duration}s through the gateway; embedded SQLite; $(nproc) cores shared by wrk and the platform)"
