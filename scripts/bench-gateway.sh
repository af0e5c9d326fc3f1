#!/usr/bin/env bash
# Gateway benchmark: the same fast upstream measured directly, behind nginx (reverse proxy with
# keep-alive), behind a featureless hyper proxy (the floor any hyper-based proxy starts from),
# behind our gateway (with edge authentication, rate limiting and metrics on), and behind the
# same gateway with its HTTP/1 fast path off (GATEWAY_FAST_PATH=false: every request on hyper
# and axum), interleaved over several rounds in one run. Prints requests/s, p50 and p99 for each
# (median of the rounds), the ratios, and the gateway's peak RSS.
#
# Usage: scripts/bench-gateway.sh [SECONDS_PER_RUN] [ROUNDS] [CONNECTIONS]
# Installs wrk and nginx from Debian's packages when missing. BENCH_SKIP_BUILD=1 reuses the
# release binaries already built. BASELINE_GATEWAY=/path/to/api-gateway adds another build of
# the gateway (an earlier commit, say) to every round, configured the same, and prints the
# ratio to it: how a change moved the gateway, measured in one run. Everything runs on
# 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
rounds=${2:-5}
connections=${3:-64}
target=${CARGO_TARGET_DIR:-target}
say() { echo "[bench] $*" >&2; }

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
    say "installing wrk and nginx (Debian packages)"
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
    $sudo_cmd apt-get update -qq
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    say "building release binaries"
    cargo build --release -q -p api-gateway --bin api-gateway --example bench_tools
fi
tools="$target/release/examples/bench_tools"
gateway_bin="$target/release/api-gateway"

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

UP=18500 NGX=18501 GW=18502 BARE=18503 GWH=18504 GWB=18505
baseline=${BASELINE_GATEWAY:-}
if [ -n "$baseline" ] && [ ! -x "$baseline" ]; then
    say "BASELINE_GATEWAY=$baseline is not an executable"; exit 2
fi
"$tools" serve $UP & pids+=($!)
"$tools" bare-proxy $BARE $UP & pids+=($!)

cat > "$work/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    upstream backend { server 127.0.0.1:$UP; keepalive 128; }
    server {
        listen 127.0.0.1:$NGX;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$remote_addr;
        }
    }
}
NGINX
"$NGINX" -c "$work/nginx.conf" -p "$work"

secret="bench-secret-bench-secret-bench-secret-0123"
cat > "$work/gateway.toml" <<TOML
[services.bench]
upstreams = ["http://127.0.0.1:$UP"]
[[routes]]
prefix = "/api/v1/bench"
service = "bench"
auth = "user"
TOML
# Access logs off on both sides (nginx: access_log off; gateway: warnings only).
PORT=$GW HOST=127.0.0.1 GATEWAY_CONFIG="$work/gateway.toml" JWT_SECRET="$secret" \
    RATE_LIMIT_PER_MINUTE=1000000000 LOG_LEVEL=warn "$gateway_bin" > "$work/gateway.log" 2>&1 &
gateway_pid=$!
pids+=("$gateway_pid")
PORT=$GWH HOST=127.0.0.1 GATEWAY_CONFIG="$work/gateway.toml" JWT_SECRET="$secret" GATEWAY_FAST_PATH=false \
    RATE_LIMIT_PER_MINUTE=1000000000 LOG_LEVEL=warn "$gateway_bin" > "$work/gateway-hyper.log" 2>&1 &
pids+=($!)
targets="direct nginx bare-hyper gateway gateway-hyper"
ports="$UP $NGX $BARE $GW $GWH"
if [ -n "$baseline" ]; then
    PORT=$GWB HOST=127.0.0.1 GATEWAY_CONFIG="$work/gateway.toml" JWT_SECRET="$secret" \
        RATE_LIMIT_PER_MINUTE=1000000000 LOG_LEVEL=warn "$baseline" > "$work/gateway-baseline.log" 2>&1 &
    pids+=($!)
    targets="$targets baseline"
    ports="$ports $GWB"
fi
token=$("$tools" token "$secret")

for port in $ports; do
    for _ in $(seq 1 100); do curl -fs -o /dev/null -H "authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/bench" && break; sleep 0.1; done
done

# Latencies in ms from wrk's "50%" / "99%" lines (us, ms or s).
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; printf "%.3f", v}'; }
run() { # name url
    local out; out=$(wrk -t2 -c"$connections" -d"${duration}s" --latency -H "authorization: Bearer $token" "$2")
    local rps p50 p99
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}' | to_ms)
    p99=$(echo "$out" | awk '$1=="99%" {print $2}' | to_ms)
    echo "$1 $rps $p50 $p99"
}
watch_rss() { while kill -0 "$gateway_pid" 2>/dev/null; do r=$(awk '/VmRSS/ {print $2}' /proc/$gateway_pid/status 2>/dev/null || echo 0); [ "$r" -gt "$(cat "$work/rss")" ] && echo "$r" > "$work/rss"; sleep 0.2; done; }
echo 0 > "$work/rss"
watch_rss & pids+=($!)

# Warm-up, not measured: every target gets its connections, pools, caches and allocator
# arenas in place before the first round, so round 1 does not pay for start-up.
say "warm-up (3s each)"
for port in $ports; do
    wrk -t2 -c"$connections" -d3s -H "authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/bench" >/dev/null
done

results="$work/results"
for round in $(seq 1 "$rounds"); do
    say "round $round/$rounds (${duration}s each, $connections connections)"
    {
        run direct "http://127.0.0.1:$UP/api/v1/bench"
        run nginx "http://127.0.0.1:$NGX/api/v1/bench"
        run bare-hyper "http://127.0.0.1:$BARE/api/v1/bench"
        run gateway "http://127.0.0.1:$GW/api/v1/bench"
        run gateway-hyper "http://127.0.0.1:$GWH/api/v1/bench"
    } >> "$results"
    if [ -n "$baseline" ]; then
        run baseline "http://127.0.0.1:$GWB/api/v1/bench" >> "$results"
    fi
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A RPS P50 P99
for name in $targets; do
    RPS[$name]=$(awk -v n="$name" '$1==n {print $2}' "$results" | median)
    P50[$name]=$(awk -v n="$name" '$1==n {print $3}' "$results" | median)
    P99[$name]=$(awk -v n="$name" '$1==n {print $4}' "$results" | median)
done
rss_mb=$(awk '{printf "%.1f", $1/1024}' "$work/rss")
echo
echo "| target | requests/s | p50 (ms) | p99 (ms) |"
echo "|---|---:|---:|---:|"
for name in $targets; do
    printf "| %s | %.0f | %s | %s |\n" "$name" "${RPS[$name]}" "${P50[$name]}" "${P99[$name]}"
done
echo
awk -v g="${RPS[gateway]}" -v n="${RPS[nginx]}" -v d="${RPS[direct]}" -v b="${RPS[bare-hyper]}" \
    -v h="${RPS[gateway-hyper]}" -v gp="${P99[gateway]}" -v np="${P99[nginx]}" \
    'BEGIN { printf "throughput gateway/nginx: %.2f   gateway/bare-hyper: %.2f   gateway/gateway-hyper: %.2f   bare-hyper/nginx: %.2f   gateway/direct: %.2f\np99 gateway/nginx: %.2f\n", g/n, g/b, g/h, b/n, g/d, gp/np }'

# Each round's ratio too: the spread says how far to trust the median on a shared machine.
echo "gateway/nginx throughput per round: $(paste <(awk '$1=="gateway" {print $2}' "$results") <(awk '$1=="nginx" {print $2}' "$results") | awk '{printf "%.2f ", $1/$2}')"
if [ -n "$baseline" ]; then
    awk -v g="${RPS[gateway]}" -v b="${RPS[baseline]}" -v gp="${P99[gateway]}" -v bp="${P99[baseline]}" \
        'BEGIN { printf "gateway/baseline: throughput %.2f, p99 %.2f\n", g/b, gp/bp }'
    echo "gateway/baseline throughput per round: $(paste <(awk '$1=="gateway" {print $2}' "$results") <(awk '$1=="baseline" {print $2}' "$results") | awk '{printf "%.2f ", $1/$2}')"
fi
echo "gateway peak RSS under load: ${rss_mb} MB"
echo "(median of $rounds rounds; wrk -t2 -c$connections -d${duration}s; $(nproc) cores shared by wrk, proxy and upstream)"
