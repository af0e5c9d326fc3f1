#!/usr/bin/env bash
# Product read benchmark: the whole platform twice (release build, embedded SQLite, behind
# the gateway), once with the product cache on and once with it off (CACHE_ENABLED=false),
# measured interleaved in one run: GET /api/v1/products/{id} and a list page. Prints
# requests/s and p99 for each, the cached/uncached ratios, and the cache hit ratio of the
# cached platform during the run (from cache_hits_total / cache_misses_total).
#
# Usage: scripts/bench-products.sh [SECONDS_PER_RUN] [ROUNDS] [CONNECTIONS]
# Installs wrk from Debian's packages when missing; BENCH_SKIP_BUILD=1 reuses the release
# binary already built. Everything runs on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
rounds=${2:-3}
connections=${3:-32}
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
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# start NAME GATEWAY_PORT PRODUCT_PORT CACHE_ENABLED
start() {
    mkdir -p "$work/$1"
    env -i PATH="$PATH" HOME="$HOME" DATA_DIR="$work/$1" PORT="$2" HOST=127.0.0.1 \
        PRODUCT_SERVICE_PORT="$3" USER_SERVICE_PORT=0 USER_SERVICE_GRPC_PORT=0 \
        PRODUCT_SERVICE_GRPC_PORT=0 PAYMENT_SERVICE_PORT=0 PAYMENT_SERVICE_GRPC_PORT=0 ORDER_SERVICE_PORT=0 ORDER_SERVICE_GRPC_PORT=0 NOTIFICATION_SERVICE_PORT=0 EVENT_STORE_PORT=0 \
        PRODUCT_SERVICE_CACHE_ENABLED="$4" RATE_LIMIT_PER_MINUTE=0 LOG_LEVEL=warn \
        JWT_SECRET=bench-secret-bench-secret-bench-secret-0123 \
        "$platform_bin" > "$work/$1.log" 2>&1 &
    pids+=($!)
}
start cached 18610 18611 true
start uncached 18620 18621 false

for port in 18610 18620; do
    for _ in $(seq 1 200); do
        curl -fs -o /dev/null "http://127.0.0.1:$port/api/v1/products" && break
        sleep 0.1
    done
done
id=$(curl -fs "http://127.0.0.1:18610/api/v1/products?per_page=1" | sed -E 's/.*"id":"([^"]+)".*/\1/')
id_uncached=$(curl -fs "http://127.0.0.1:18620/api/v1/products?per_page=1" | sed -E 's/.*"id":"([^"]+)".*/\1/')
say "platforms up; product $id"

to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; printf "%.3f", v}'; }
run() { # name url
    local out rps p99
    out=$(wrk -t2 -c"$connections" -d"${duration}s" --latency "$2")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}' | to_ms)
    echo "$1 $rps $p99"
}
# Sum of one cache's hits or misses over both layers' l1 series (every call is counted there).
counter() { # metric cache
    curl -fs "http://127.0.0.1:18611/metrics" |
        awk -v m="$1" -v c="$2" '$1 ~ "^"m"\\{" && $1 ~ "cache=\""c"\"" && $1 ~ "layer=\"l1\"" {s+=$2} END {printf "%d", s}'
}

# Warm the cached platform.
curl -fs -o /dev/null "http://127.0.0.1:18610/api/v1/products/$id"
curl -fs -o /dev/null "http://127.0.0.1:18610/api/v1/products?page=1&per_page=20"
hits0=$(( $(counter cache_hits_total products) + $(counter cache_hits_total product_lists) ))
miss0=$(( $(counter cache_misses_total products) + $(counter cache_misses_total product_lists) ))

results="$work/results"
for round in $(seq 1 "$rounds"); do
    say "round $round/$rounds (${duration}s each, $connections connections)"
    {
        run item-cached "http://127.0.0.1:18610/api/v1/products/$id"
        run item-uncached "http://127.0.0.1:18620/api/v1/products/$id_uncached"
        run list-cached "http://127.0.0.1:18610/api/v1/products?page=1&per_page=20"
        run list-uncached "http://127.0.0.1:18620/api/v1/products?page=1&per_page=20"
    } >> "$results"
done
hits=$(( $(counter cache_hits_total products) + $(counter cache_hits_total product_lists) - hits0 ))
misses=$(( $(counter cache_misses_total products) + $(counter cache_misses_total product_lists) - miss0 ))

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A RPS P99
for name in item-cached item-uncached list-cached list-uncached; do
    RPS[$name]=$(awk -v n=$name '$1==n {print $2}' "$results" | median)
    P99[$name]=$(awk -v n=$name '$1==n {print $3}' "$results" | median)
done
echo
echo "| request | cache | requests/s | p99 (ms) |"
echo "|---|---|---:|---:|"
for what in item list; do
    for mode in cached uncached; do
        printf "| %s | %s | %.0f | %s |\n" "$what" "$mode" "${RPS[$what-$mode]}" "${P99[$what-$mode]}"
    done
done
echo
awk -v ic="${RPS[item-cached]}" -v iu="${RPS[item-uncached]}" -v lc="${RPS[list-cached]}" -v lu="${RPS[list-uncached]}" \
    'BEGIN { printf "throughput cached/uncached: item %.2f, list %.2f\n", ic/iu, lc/lu }'
awk -v h="$hits" -v m="$misses" 'BEGIN { t=h+m; printf "cache hit ratio during the run: %.4f (%d hits, %d misses)\n", (t ? h/t : 0), h, m }'
echo "(median of $rounds rounds; wrk -t2 -c$connections -d${duration}s through the gateway; embedded SQLite; $(nproc) cores shared by wrk and the platform)"
