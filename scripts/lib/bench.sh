# Shared by the platform benchmarks (bench-orders.sh, bench-tracing.sh): start whole
# platforms (release binary; embedded SQLite, or private databases on a PostgreSQL server) on
# 127.0.0.1, prepare an admin token and a product, and drive them with wrk (and PostgreSQL
# with pgbench). Sourced; expects $work, $platform_bin, $duration and $connections to be set,
# and `say`. The PostgreSQL helpers use $PG_URL, a server where databases may be created.
# shellcheck shell=bash disable=SC2154

admin_email=bench-admin@example.com
admin_password="bench admin password 123"
pids=()
# Private databases (full names) to drop on exit. The server is shared and outlives the run,
# so nothing may be left on it, whatever ends the script.
pg_dbs=()
pg_prefix="bench_$$"
: "${PG_URL:=postgres://postgres@127.0.0.1:5432/postgres}"
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    # FORCE: a client the run started and lost track of (an interrupted pgbench) must not
    # keep a database alive.
    for db in "${pg_dbs[@]}"; do
        psql "$PG_URL" -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 ||
            say "could not drop database $db"
    done
    rm -rf "$work"
}
trap cleanup EXIT

# start NAME PORT [VAR=VALUE...]: a platform on PORT with its data under $work/NAME.
start() {
    local name=$1 port=$2; shift 2
    mkdir -p "$work/$name"
    env -i PATH="$PATH" HOME="$HOME" DATA_DIR="$work/$name" PORT="$port" HOST=127.0.0.1 \
        USER_SERVICE_PORT=0 USER_SERVICE_GRPC_PORT=0 PRODUCT_SERVICE_PORT=0 PRODUCT_SERVICE_GRPC_PORT=0 \
        PAYMENT_SERVICE_PORT=0 PAYMENT_SERVICE_GRPC_PORT=0 ORDER_SERVICE_PORT=0 ORDER_SERVICE_GRPC_PORT=0 NOTIFICATION_SERVICE_PORT=0 EVENT_STORE_PORT=0 \
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
write_post_lua() {
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
}

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

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run_get() { # name url: GETs url over and over
    local out rps p50 p99 bad
    out=$(wrk -t2 -c"$connections" -d"${duration}s" --latency "$2")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}' | to_ms)
    p99=$(echo "$out" | awk '$1=="99%" {print $2}' | to_ms)
    bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    echo "$1 $rps $p50 $p99 ${bad:-0}"
}

# pg_url_for DATABASE: $PG_URL naming DATABASE instead (its query string kept).
pg_url_for() {
    local base=${PG_URL%%\?*} query
    query=${PG_URL#"$base"}
    if [[ ${base#*://} == */* ]]; then base=${base%/*}; fi
    echo "$base/$1$query"
}
# pg_create NAME: creates the private database ${pg_prefix}_NAME.
pg_create() {
    local db="${pg_prefix}_$1"
    pg_dbs+=("$db") # before CREATE: an interrupted one is dropped too
    psql "$PG_URL" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$db\"" >/dev/null
}
# pg_platform NAME: a private database for each service of a platform (as each owns its data
# when deployed apart), and in pg_env the variables that point `platform up`'s services at
# them (VAR=VALUE, for `start`). The event bus stays the embedded one under DATA_DIR.
pg_platform() {
    local prefix db
    pg_env=()
    for prefix in USER_SERVICE PRODUCT_SERVICE ORDER_SERVICE PAYMENT_SERVICE NOTIFICATION_SERVICE EVENT_STORE; do
        db="$1_${prefix,,}"
        pg_create "$db"
        pg_env+=("${prefix}_DATABASE_URL=$(pg_url_for "${pg_prefix}_$db")")
    done
}

# percentile Q: the nearest-rank Q-quantile (0..1) of the numbers read, one a line.
percentile() { sort -n | awk -v q="$1" '{a[NR]=$1} END {if (!NR) {print "nan"; exit} i=int(q*NR); if (i<q*NR) i++; if (i<1) i=1; printf "%.3f", a[i]}'; }
# run_pgbench NAME DATABASE_URL: `pgbench -N` with as many clients as wrk has connections, for
# as long; prints "NAME tps p50 p99 failed" like `run` (latencies in ms from pgbench's
# per-transaction log, so they compare with wrk's).
run_pgbench() {
    local out tps failed jobs=$((connections < 2 ? connections : 2)) log="$work/pgbench-tx"
    rm -f "$log".*
    if ! out=$(pgbench -N -c "$connections" -j "$jobs" -T "$duration" -n -l --log-prefix="$log" "$2" 2> "$work/pgbench.err"); then
        say "pgbench failed:"; cat "$work/pgbench.err" >&2
        return 1
    fi
    # PostgreSQL 14+ prints one tps line (", without initial connection time" or nothing);
    # older versions print two, of which the one excluding connecting compares.
    tps=$(echo "$out" | awk '/^tps = / && !/including/ {t=$3} END {print t}')
    failed=$(echo "$out" | awk '/^number of failed transactions:/ {print $5}')
    # Third column: the transaction's latency in microseconds (a word for a failed one).
    echo "$1 $tps $(awk '$3 ~ /^[0-9]+$/ {print $3/1000}' "$log".* | percentile 0.5)" \
        "$(awk '$3 ~ /^[0-9]+$/ {print $3/1000}' "$log".* | percentile 0.99) ${failed:-0}"
    rm -f "$log".*
}
