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

if ! command -v wrk >/dev/null; then
    say "installing wrk (Debian package)"
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
    $sudo_cmd apt-get update -qq
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    say "building the release binary"
    cargo build --release -q -p platform
fi
platform_bin="$target/release/platform"

work=$(mktemp -d)

admin_email=bench-admin@example.com
admin_password="bench admin password 123"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# start NAME PORT [VAR=VALUE...]: a platform on PORT with its data under $work/NAME.
start() {
    local name=$1 port=$2; shift 2
    mkdir -p "$work/$name"
    env -i PATH="$PATH" HOME="$HOME" DATA_DIR="$work/$name" PORT="$port" HOST=127.0.0.1 \
        USER_SERVICE_PORT=0 USER_SERVICE_GRPC_PORT=0 PRODUCT_SERVICE_PORT=0 PRODUCT_SERVICE_GRPC_PORT=0 \
        PAYMENT_SERVICE_PORT=0 PAYMENT_SERVICE_GRPC_PORT=0 ORDER_SERVICE_PORT=0 NOTIFICATION_SERVICE_PORT=0 EVENT_STORE_PORT=0 \
        RATE_LIMIT_PER_MINUTE=0 LOG_LEVEL=warn \
        ADMIN_EMAIL="$admin_email" ADMIN_PASSWORD="$admin_password" \
        FRAUD_VELOCITY_WINDOW=1m FRAUD_MAX_PAYMENTS_PER_USER=100000 FRAUD_MAX_PAYMENTS_PER_CARD=100000 \
        JWT_SECRET=bench-secret-bench-secret-bench-secret-0123 "$@" \
        "$platform_bin" > "$work/$name.log" 2>&1 &
    pids+=($!)
}
# prepare PORT: waits for the platform, prints "TOKEN PRODUCT" (an admin token, a product with
# stock for any run).
prepare() {
    local base="http://127.0.0.1:$1" token product
    for _ in $(seq 1 300); do
        curl -fs -o /dev/null "$base/api/v1/products" && break
        sleep 0.1
    done
    token=$(curl -fs "$base/api/v1/auth/login" -H 'content-type: application/json' \
        -d "{\"email\":\"$admin_email\",\"password\":\"$admin_password\"}" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
    product=$(curl -fs "$base/api/v1/admin/products" -H "authorization: Bearer $token" -H 'content-type: application/json' \
        -d '{"sku":"BENCH-1","name":"Bench mug","category":"kitchen","price":{"amount":1250,"currency":"EUR"},"stock":100000000}' |
        sed -E 's/.*"id":"([^"]+)".*/\1/')
    echo "$token $product"
}
say "starting two platforms"
start default 18710
start pool25 18720 DB_MAX_CONNECTIONS=25
read -r token product < <(prepare 18710)
read -r token25 product25 < <(prepare 18720)
base="http://127.0.0.1:18710"
say "platforms up; product $product"

cat > "$work/post.lua" <<'LUA'
-- A fresh Idempotency-Key (and order id) per request; KIND is "orders" or "payments".
local counter = 0
local kind = os.getenv("KIND")
local token = os.getenv("TOKEN")
local product = os.getenv("PRODUCT")
local threads = 0
function setup(thread)
    threads = threads + 1
    thread:set("seed", threads * 7919 + os.time())
end
function init(args)
    math.randomseed(seed or os.time())
end
local function uuid()
    return (string.gsub("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx", "[xy]", function(c)
        local v = (c == "x") and math.random(0, 15) or math.random(8, 11)
        return string.format("%x", v)
    end))
end
function request()
    counter = counter + 1
    local headers = {
        ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer " .. token,
        ["Idempotency-Key"] = uuid(),
    }
    local body
    if kind == "orders" then
        body = '{"items":[{"product_id":"' .. product .. '","quantity":1}],"payment":{"token":"tok_visa"},'
            .. '"shipping_address":{"name":"Bench","line1":"1 Road","city":"Town","postal_code":"1","country":"DE"}}'
    else
        body = '{"order_id":"' .. uuid() .. '","amount":{"amount":1250,"currency":"EUR"},'
            .. '"method":{"type":"card","token":"tok_visa"}}'
    end
    return wrk.format("POST", "/api/v1/" .. kind, headers, body)
end
LUA

to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; printf "%.3f", v}'; }
run() { # name kind port token product
    local out rps p50 p99 bad
    out=$(KIND="$2" TOKEN="$4" PRODUCT="$5" \
        wrk -t2 -c"$connections" -d"${duration}s" --latency -s "$work/post.lua" "http://127.0.0.1:$3")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}' | to_ms)
    p99=$(echo "$out" | awk '$1=="99%" {print $2}' | to_ms)
    bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    echo "$1 $rps $p50 $p99 ${bad:-0}"
}

results="$work/results"
for round in $(seq 1 "$rounds"); do
    say "round $round/$rounds (${duration}s each, $connections connections)"
    {
        run orders orders 18710 "$token" "$product"
        run orders-pool25 orders 18720 "$token25" "$product25"
        run payments payments 18710 "$token" "$product"
    } >> "$results"
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
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
