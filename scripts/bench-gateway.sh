#!/usr/bin/env bash
# Gateway benchmark: the same fast upstream measured directly and behind each proxy, every
# target interleaved over several rounds in one run, at several concurrency levels and over
# plain HTTP/1.1, HTTPS (HTTP/1.1 over TLS) and HTTP/2 over TLS. Prints, per protocol and
# concurrency level, requests/s, latency and each proxy's peak RSS (median of the rounds), the
# ratios of the gateway to its peers, and at the end one summary line per protocol and level.
#
# Targets (all on 127.0.0.1; the upstream is `bench_tools serve`, a fixed JSON answer):
#   direct         the upstream itself, no proxy (http only): the ceiling.
#   nginx          nginx reverse proxy with a keep-alive pool to the upstream.
#   haproxy        HAProxy (mode http, one thread per core, http-reuse always): the second peer.
#   bare-hyper     `bench_tools bare-proxy`, a featureless hyper proxy: the floor any hyper-based
#                  proxy starts from (http only).
#   gateway        our gateway on a JWT-authenticated route (edge auth, rate limiting, metrics
#                  on), HTTP/1 fast path on. Over https and h2 a second gateway process serves
#                  TLS (TLS_CERT_FILE/TLS_KEY_FILE; it offers ALPN h2 and http/1.1).
#   gateway-hyper  the same gateway with GATEWAY_FAST_PATH=false: every request on hyper and
#                  axum (http only).
#   baseline       BASELINE_GATEWAY's build of the gateway, configured the same (http only).
#
# Usage: scripts/bench-gateway.sh [SECONDS_PER_RUN] [ROUNDS] [CONNECTIONS]
#   SECONDS_PER_RUN  default 10; ROUNDS default 5;
#   CONNECTIONS      comma-separated client connection counts, default 64,256,1024 (one number
#                    works too). Each level gets its own warm-up, rounds and table.
# Environment:
#   PROTOCOLS=http,https,h2  which protocols to measure (default http). http and https are
#                    driven by wrk (-t2); h2 by h2load (-t2, 10 streams per connection), which
#                    reports no percentiles: its tables show mean and max latency instead.
#   BENCH_SKIP_BUILD=1  reuse the release binaries already built (under CARGO_TARGET_DIR,
#                    default target/).
#   BASELINE_GATEWAY=/path/to/api-gateway  adds another build of the gateway (an earlier
#                    commit, say) to every http round and prints the ratio to it: how a change
#                    moved the gateway, measured in one run.
#   BENCH_WARMUP=3   seconds of unmeasured load per target before each level's rounds.
#   BENCH_KEEP=1     keep the temporary directory (configs, logs, raw results) and print it.
# Installs wrk, nginx, HAProxy and h2load from Debian's packages when one is missing. Every
# process the script starts is stopped on any exit.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
rounds=${2:-5}
levels_arg=${3:-64,256,1024}
protocols_arg=${PROTOCOLS:-http}
warmup=${BENCH_WARMUP:-3}
target=${CARGO_TARGET_DIR:-target}
say() { echo "[bench] $*" >&2; }
die() { say "$*"; exit 2; }

IFS=, read -r -a levels <<< "$levels_arg"
IFS=, read -r -a protocols <<< "$protocols_arg"
for c in "${levels[@]}"; do
    # wrk and h2load both need at least one connection per thread (-t2).
    if ! [[ $c =~ ^[0-9]+$ ]] || [ "$c" -lt 2 ]; then die "connection count '$c': expected a number >= 2"; fi
done
want_tls=0
for p in "${protocols[@]}"; do
    case $p in
        http) ;;
        https|h2) want_tls=1 ;;
        *) die "PROTOCOLS: unknown protocol '$p' (http, https, h2)" ;;
    esac
done
for n in "$duration" "$rounds" "$warmup"; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "'$n': expected a positive number"; done

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null || ! command -v haproxy >/dev/null \
    || ! command -v h2load >/dev/null; then
    say "installing wrk, nginx, haproxy and h2load (Debian packages)"
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
    $sudo_cmd apt-get update -qq
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light haproxy nghttp2-client >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    say "building release binaries"
    cargo build --release -q -p api-gateway --bin api-gateway --example bench_tools
fi
tools="$target/release/examples/bench_tools"
gateway_bin="$target/release/api-gateway"
baseline=${BASELINE_GATEWAY:-}
if [ -n "$baseline" ] && [ ! -x "$baseline" ]; then
    die "BASELINE_GATEWAY=$baseline is not an executable"
fi

# 1024 client connections through a proxy hold about 2048 descriptors in the proxy and 1024 in
# the load generator: the usual soft limit of 1024 would turn the top level into connect errors.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
[ "$nofile" = unlimited ] && nofile=1000000
max_level=0
for c in "${levels[@]}"; do [ "$c" -gt "$max_level" ] && max_level=$c; done
[ $((max_level * 2 + 64)) -le "$nofile" ] || say "warning: ${max_level} connections need about $((max_level * 2 + 64)) descriptors per proxy; ulimit -n is $nofile"

work=$(mktemp -d)
pids=()
nginx_pid=""
cleanup() {
    set +e
    local pid alive
    [ -z "$nginx_pid" ] && [ -f "$work/nginx.pid" ] && nginx_pid=$(cat "$work/nginx.pid")
    for pid in "${pids[@]}" ${nginx_pid:+"$nginx_pid"}; do kill "$pid" 2>/dev/null; done
    # Wait until they are gone, so that nothing outlives the script and the next run finds its
    # ports free; whatever ignores SIGTERM for 5 s gets SIGKILL.
    for _ in $(seq 1 50); do
        alive=0
        for pid in "${pids[@]}" ${nginx_pid:+"$nginx_pid"}; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${pids[@]}" ${nginx_pid:+"$nginx_pid"}; do kill -9 "$pid" 2>/dev/null; done
    [ -n "$nginx_pid" ] && pkill -9 -P "$nginx_pid" 2>/dev/null
    wait 2>/dev/null
    if [ "${BENCH_KEEP:-0}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
# The EXIT trap runs on these too only if the shell exits through `exit`.
trap 'exit 130' INT
trap 'exit 143' TERM

UP=18500 NGX=18501 GW=18502 BARE=18503 GWH=18504 GWB=18505 HAP=18506
NGX_TLS=18507 HAP_TLS=18508 GW_TLS=18509 NGX_H2=18510 HAP_H2=18511
h2_streams=10
declare -A PID
"$tools" serve $UP & PID[direct]=$!; pids+=("$!")
"$tools" bare-proxy $BARE $UP & PID[bare-hyper]=$!; pids+=("$!")

if [ "$want_tls" = 1 ]; then
    # ECDSA P-256: what a current edge certificate is, and the cheapest handshake all three
    # (OpenSSL in nginx and HAProxy, rustls in the gateway) accept.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
    cat "$work/cert.pem" "$work/key.pem" > "$work/haproxy.pem"
fi

# nginx: enough worker connections (client + upstream side) and a keep-alive pool as large as
# the top level, so that neither a connection cap nor pool churn is what gets measured. Its
# default keepalive_requests (1000, HTTP/2 included) ends every connection after 1000 requests:
# h2load does not reconnect after that GOAWAY, so nginx would stall and fail the h2 runs, and
# wrk and the upstream pool would pay for reconnects HAProxy and the gateway never make.
# shellcheck disable=SC2016 # $remote_addr is nginx's variable, not the shell's
location='location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $remote_addr;
        }'
nginx_tls="" nginx_servers=""
if [ "$want_tls" = 1 ]; then
    nginx_tls="ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;"
    # Separate ports for HTTP/1.1 over TLS and HTTP/2: nginx 1.22 turns http2 on per address.
    nginx_servers="server { listen 127.0.0.1:$NGX_TLS ssl; $location }
    server { listen 127.0.0.1:$NGX_H2 ssl http2; $location }"
fi
cat > "$work/nginx.conf" <<NGINX
worker_processes auto;
worker_rlimit_nofile 16384;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 100000000;
    upstream backend { server 127.0.0.1:$UP; keepalive 1024; keepalive_requests 100000000; }
    $nginx_tls
    server { listen 127.0.0.1:$NGX; $location }
    $nginx_servers
}
NGINX
"$NGINX" -c "$work/nginx.conf" -p "$work"
for _ in $(seq 1 50); do [ -s "$work/nginx.pid" ] && break; sleep 0.1; done
nginx_pid=$(cat "$work/nginx.pid")

# HAProxy sizes its descriptor needs from maxconn (two per proxied connection) and refuses to
# start past the limit: 8000 fits 20000, a lower limit gets a lower maxconn.
hap_maxconn=$(( (nofile - 200) / 2 ))
[ "$hap_maxconn" -gt 8000 ] && hap_maxconn=8000
hap_tls=""
if [ "$want_tls" = 1 ]; then
    hap_tls="frontend https
    bind 127.0.0.1:$HAP_TLS ssl crt $work/haproxy.pem alpn http/1.1
    default_backend upstream
frontend h2
    bind 127.0.0.1:$HAP_H2 ssl crt $work/haproxy.pem alpn h2,http/1.1
    default_backend upstream"
fi
# No `log` line anywhere: no logging, like nginx's access_log off.
cat > "$work/haproxy.cfg" <<HAPROXY
global
    nbthread $(nproc)
    maxconn $hap_maxconn
defaults
    mode http
    maxconn $hap_maxconn
    option http-keep-alive
    option forwardfor
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
frontend http
    bind 127.0.0.1:$HAP
    default_backend upstream
$hap_tls
backend upstream
    server up 127.0.0.1:$UP
HAPROXY
"$HAPROXY" -c -q -f "$work/haproxy.cfg" || die "HAProxy rejects $work/haproxy.cfg"
"$HAPROXY" -db -f "$work/haproxy.cfg" > "$work/haproxy.log" 2>&1 &
PID[haproxy]=$!; pids+=("$!")

secret="bench-secret-bench-secret-bench-secret-0123"
cat > "$work/gateway.toml" <<TOML
[services.bench]
upstreams = ["http://127.0.0.1:$UP"]
[[routes]]
prefix = "/api/v1/bench"
service = "bench"
auth = "user"
TOML
# Rate limiting and the in-flight cap stay on but out of reach, as the peers have neither: h2 at
# the top level keeps CONNECTIONS x 10 requests in flight, past the default cap of 4096.
max_inflight=$((max_level * h2_streams * 2))
[ "$max_inflight" -lt 4096 ] && max_inflight=4096
# start_gateway NAME PORT BINARY [VAR=VALUE...]. Each gets its own DATA_DIR (the embedded event
# bus): no SQLite file shared between processes, nothing written into the repository.
# Access logs off on both sides (nginx: access_log off; gateway: warnings only).
start_gateway() {
    local name=$1 port=$2 bin=$3
    shift 3
    mkdir -p "$work/$name"
    env PORT="$port" HOST=127.0.0.1 GATEWAY_CONFIG="$work/gateway.toml" JWT_SECRET="$secret" \
        RATE_LIMIT_PER_MINUTE=1000000000 GATEWAY_MAX_CONCURRENT_REQUESTS="$max_inflight" \
        DATA_DIR="$work/$name" LOG_LEVEL=warn "$@" "$bin" > "$work/$name.log" 2>&1 &
    PID[$name]=$!
    pids+=("$!")
}
start_gateway gateway $GW "$gateway_bin"
start_gateway gateway-hyper $GWH "$gateway_bin" GATEWAY_FAST_PATH=false
[ -n "$baseline" ] && start_gateway baseline $GWB "$baseline"
[ "$want_tls" = 1 ] && start_gateway gateway-tls $GW_TLS "$gateway_bin" \
    TLS_CERT_FILE="$work/cert.pem" TLS_KEY_FILE="$work/key.pem"
token=$("$tools" token "$secret")

# The targets of each protocol, in the order of every round.
targets_of() {
    case $1 in
        http) echo "direct nginx haproxy bare-hyper gateway gateway-hyper${baseline:+ baseline}" ;;
        *) echo "nginx haproxy gateway" ;;
    esac
}
url_of() { # PROTO NAME
    local port
    case $1:$2 in
        http:direct) port=$UP ;; http:nginx) port=$NGX ;; http:haproxy) port=$HAP ;;
        http:bare-hyper) port=$BARE ;; http:gateway) port=$GW ;; http:gateway-hyper) port=$GWH ;;
        http:baseline) port=$GWB ;;
        https:nginx) port=$NGX_TLS ;; https:haproxy) port=$HAP_TLS ;; https:gateway) port=$GW_TLS ;;
        h2:nginx) port=$NGX_H2 ;; h2:haproxy) port=$HAP_H2 ;; h2:gateway) port=$GW_TLS ;;
        *) die "no $2 over $1" ;;
    esac
    if [ "$1" = http ]; then echo "http://127.0.0.1:$port/api/v1/bench"; else echo "https://127.0.0.1:$port/api/v1/bench"; fi
}
# The processes answering for a target: nginx is its master and workers.
pids_of() { # PROTO NAME
    case $2 in
        nginx) echo "$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')" ;;
        gateway) if [ "$1" = http ]; then echo "${PID[gateway]}"; else echo "${PID[gateway-tls]}"; fi ;;
        *) echo "${PID[$2]}" ;;
    esac
}

# Every target must answer 200 before anything is measured: a target that answers errors (or
# nothing) would otherwise show up as a figure.
for proto in "${protocols[@]}"; do
    for name in $(targets_of "$proto"); do
        url=$(url_of "$proto" "$name")
        ok=0
        for _ in $(seq 1 150); do
            curl -fsk -o /dev/null --max-time 2 -H "authorization: Bearer $token" "$url" && { ok=1; break; }
            sleep 0.1
        done
        if [ "$ok" = 0 ]; then
            say "$name ($proto) does not answer 200 at $url"
            for log in "$work"/*.log; do [ -s "$log" ] && { say "--- $log"; tail -n 20 "$log" >&2; }; done
            exit 1
        fi
    done
done

# Latencies in ms from wrk's and h2load's figures (us, ms or s).
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; printf "%.3f", v}'; }
# load PROTO URL CONNECTIONS SECONDS: prints "rps lat1 lat2 non2xx socket_errors h2_failed
# h2_errored broken" (lat1/lat2: p50/p99 from wrk, mean/max from h2load). non2xx is wrk's
# "Non-2xx or 3xx" (status >= 400) or h2load's 3xx+4xx+5xx. broken: no figures, or h2load did
# not get HTTP/2. `timeout` bounds a load generator that hangs past its duration.
load() {
    local proto=$1 url=$2 conns=$3 secs=$4 out
    if [ "$proto" = h2 ]; then
        out=$(timeout --foreground -k 5 $((secs + 30)) h2load -c "$conns" -m "$h2_streams" -D "$secs" -t 2 \
            -H "authorization: Bearer $token" "$url" 2>&1) || true
        awk '
            function ms(v) { if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 } if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 } if (v ~ /s$/) { sub(/s$/, "", v); return v * 1000 } return v + 0 }
            /^finished in/ { rps = $4 }
            /^requests:/ { for (i = 2; i <= NF; i++) { if ($i ~ /^failed/) failed = $(i-1); if ($i ~ /^errored/) errored = $(i-1) } }
            /^status codes:/ { non2xx = $5 + $7 + $9 }
            /^time for request:/ { mean = ms($6); max = ms($5) }
            /^Application protocol:/ { alpn = $3 }
            END { broken = (rps == "" || alpn != "h2"); printf "%s %.3f %.3f %d 0 %d %d %d\n", rps + 0, mean, max, non2xx, failed, errored, broken }' <<< "$out"
    else
        out=$(timeout --foreground -k 5 $((secs + 30)) wrk -t2 -c"$conns" -d"${secs}s" --latency \
            -H "authorization: Bearer $token" "$url" 2>&1) || true
        local rps p50 p99
        rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
        p50=$(awk '$1=="50%" {print $2}' <<< "$out" | to_ms)
        p99=$(awk '$1=="99%" {print $2}' <<< "$out" | to_ms)
        awk -v rps="$rps" -v p50="$p50" -v p99="$p99" '
            /Non-2xx or 3xx responses:/ { non2xx = $NF }
            /Socket errors:/ { for (i = 3; i <= NF; i++) { v = $i; sub(/,$/, "", v); if (v ~ /^[0-9]+$/) sock += v } }
            END { printf "%s %.3f %.3f %d %d 0 0 %d\n", rps + 0, p50, p99, non2xx, sock, (rps == "") }' <<< "$out"
    fi
    printf '%s\n' "$out" > "$work/last-$proto.out"
}

# Peak RSS per run: a sampler reads every 0.2 s which run is under load ($work/active: "KEY PID...")
# and keeps the peak of the sum of those processes' VmRSS in $work/rss/KEY. Builtins only (no
# fork per sample), so the sampler costs the measured processes next to nothing.
mkdir -p "$work/rss"
echo idle > "$work/active"
sample_rss() {
    set +e
    local key pids_now pid k v sum
    declare -A peak
    while :; do
        key=idle
        read -r key pids_now 2>/dev/null < "$work/active"
        if [ "$key" != idle ] && [ -n "$key" ]; then
            sum=0
            for pid in $pids_now; do
                while read -r k v _; do
                    if [ "$k" = VmRSS: ]; then sum=$((sum + v)); break; fi
                done 2>/dev/null < "/proc/$pid/status"
            done
            if [ "$sum" -gt "${peak[$key]:-0}" ]; then
                peak[$key]=$sum
                echo "$sum" > "$work/rss/$key"
            fi
        fi
        sleep 0.2
    done
}
sample_rss & pids+=("$!")
set_active() { echo "$*" > "$work/active.new"; mv "$work/active.new" "$work/active"; }

results="$work/results"
: > "$results"
summary="$work/summary"
: > "$summary"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# ratio A B: A/B to two decimals, n/a when B is missing or zero.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a != "") printf "%.2f", a / b; else printf "n/a" }'; }
# per_round LEVEL PROTO A "B C": each round's throughput of A over the best of B, C that round.
per_round() {
    awk -v l="$1" -v p="$2" -v a="$3" -v bs="$4" -v R="$rounds" '
        BEGIN { n = split(bs, B, " "); for (i = 1; i <= n; i++) isb[B[i]] = 1 }
        $1 == l && $2 == p && $3 == a { g[$4] = $5 }
        $1 == l && $2 == p && ($3 in isb) && $5 > best[$4] { best[$4] = $5 }
        END { for (r = 1; r <= R; r++) printf "%s%s", (r > 1 ? " " : ""), (best[r] > 0 ? sprintf("%.2f", g[r] / best[r]) : "n/a") }' "$results"
}

# The aggregates of one protocol at one level, by target (set by `aggregate`).
declare -A RPS L1 L2 BAD SOCK H2F H2E BROKEN RSS
column() { # LEVEL PROTO NAME FIELD: that field of each of its runs
    awk -v l="$1" -v p="$2" -v n="$3" -v f="$4" '$1==l && $2==p && $3==n {print $f}' "$results"
}
total() { awk '{s += $1} END {print s + 0}'; }
aggregate() { # LEVEL PROTO
    local name
    RPS=() L1=() L2=() BAD=() SOCK=() H2F=() H2E=() BROKEN=() RSS=()
    for name in $(targets_of "$2"); do
        RPS[$name]=$(column "$1" "$2" "$name" 5 | median)
        L1[$name]=$(column "$1" "$2" "$name" 6 | median)
        L2[$name]=$(column "$1" "$2" "$name" 7 | median)
        BAD[$name]=$(column "$1" "$2" "$name" 8 | total)
        SOCK[$name]=$(column "$1" "$2" "$name" 9 | total)
        H2F[$name]=$(column "$1" "$2" "$name" 10 | total)
        H2E[$name]=$(column "$1" "$2" "$name" 11 | total)
        BROKEN[$name]=$(column "$1" "$2" "$name" 12 | total)
        RSS[$name]=$(awk '{printf "%.1f", $1 / 1024}' "$work/rss/$1.$2.$name" 2>/dev/null || true)
        RSS[$name]=${RSS[$name]:-0.0}
    done
}
# A run that errored (or gave no figures) fails its target; a target that answered non-2xx is
# flagged. Neither can be the best peer: a proxy answering errors fast is no winner.
failed() { [ "${BROKEN[$1]}" -gt 0 ] || [ "${H2E[$1]}" -gt 0 ] || [ "${H2F[$1]}" -gt 0 ]; }
healthy() { ! failed "$1" && [ "${BAD[$1]}" -eq 0 ]; }
notes() { # NAME
    local n=""
    if [ "${BAD[$1]}" -gt 0 ]; then n+="${BAD[$1]} non-2xx; "; fi
    if [ "${SOCK[$1]}" -gt 0 ]; then n+="${SOCK[$1]} socket errors; "; fi
    if [ "${H2F[$1]}" -gt 0 ] || [ "${H2E[$1]}" -gt 0 ]; then n+="h2load: ${H2F[$1]} failed, ${H2E[$1]} errored; "; fi
    if [ "${BROKEN[$1]}" -gt 0 ]; then n+="${BROKEN[$1]} runs without figures (or not h2); "; fi
    echo "${n%; }"
}
# lowest LIST-OF-NAMES ARRAY: the smallest value of ARRAY among the names.
lowest() {
    local -n values=$2
    local name low=""
    for name in $1; do
        if [ -z "$low" ] || awk -v a="${values[$name]}" -v b="$low" 'BEGIN { exit !(a < b) }'; then low=${values[$name]}; fi
    done
    echo "$low"
}

report() { # LEVEL PROTO PROTO_INDEX
    local level=$1 proto=$2 name
    aggregate "$level" "$proto"
    echo
    if [ "$proto" = h2 ]; then
        echo "### h2, $level connections x $h2_streams streams (median of $rounds rounds; h2load -t2 -m$h2_streams -D$duration)"
        echo
        echo "| target | requests/s | mean (ms; h2load has no p50) | max (ms; h2load has no p99) | peak RSS (MB) | notes |"
    else
        echo "### $proto, $level connections (median of $rounds rounds; wrk -t2 -c$level -d${duration}s)"
        echo
        echo "| target | requests/s | p50 (ms) | p99 (ms) | peak RSS (MB) | notes |"
    fi
    echo "|---|---:|---:|---:|---:|---|"
    for name in $(targets_of "$proto"); do
        local shown
        if failed "$name"; then shown=FAILED; else shown=$(printf "%.0f" "${RPS[$name]}"); fi
        printf "| %s | %s | %s | %s | %s | %s |\n" "$name" "$shown" "${L1[$name]}" "${L2[$name]}" "${RSS[$name]}" "$(notes "$name")"
    done
    echo

    local best="" best_rps=0 peers_ok="" lat=p99
    [ "$proto" = h2 ] && lat=max
    for name in nginx haproxy; do
        healthy "$name" || continue
        peers_ok+="$name "
        if awk -v a="${RPS[$name]}" -v b="$best_rps" 'BEGIN { exit !(a > b) }'; then best=$name; best_rps=${RPS[$name]}; fi
    done
    local g_rps=${RPS[gateway]} g_lat=${L2[gateway]} warn="" t_ratio=n/a l_ratio=n/a
    if failed gateway; then g_rps="" g_lat=""; fi
    if [ "${BAD[gateway]}" -gt 0 ]; then warn=" (the gateway answered ${BAD[gateway]} non-2xx: not comparable)"; fi
    if [ -n "$best" ]; then
        t_ratio=$(ratio "$g_rps" "$best_rps")
        l_ratio=$(ratio "$g_lat" "$(lowest "$peers_ok" L2)")
        echo "throughput gateway/best peer ($best): $t_ratio   $lat gateway/min($lat nginx, haproxy): $l_ratio$warn"
        if [ "$proto" = h2 ]; then
            echo "mean latency gateway/min(mean nginx, haproxy): $(ratio "${L1[gateway]}" "$(lowest "$peers_ok" L1)")"
        fi
        # Each round's ratio too: the spread says how far to trust the median on a shared machine.
        echo "gateway/best peer throughput per round: $(per_round "$level" "$proto" gateway "$peers_ok")"
    else
        echo "throughput gateway/best peer: n/a (neither nginx nor haproxy answered only 2xx)"
    fi
    if [ "$proto" = http ]; then
        awk -v g="$g_rps" -v n="${RPS[nginx]}" -v d="${RPS[direct]}" -v b="${RPS[bare-hyper]}" \
            -v h="${RPS[gateway-hyper]}" -v gp="$g_lat" -v np="${L2[nginx]}" '
            function r(a, b) { return (b + 0 > 0 && a != "") ? sprintf("%.2f", a / b) : "n/a" }
            BEGIN { printf "throughput gateway/nginx: %s   gateway/bare-hyper: %s   gateway/gateway-hyper: %s   bare-hyper/nginx: %s   gateway/direct: %s\np99 gateway/nginx: %s\n", r(g, n), r(g, b), r(g, h), r(b, n), r(g, d), r(gp, np) }'
        echo "gateway/nginx throughput per round: $(per_round "$level" "$proto" gateway nginx)"
        if [ -n "$baseline" ]; then
            echo "gateway/baseline: throughput $(ratio "$g_rps" "${RPS[baseline]}"), p99 $(ratio "$g_lat" "${L2[baseline]}")"
            echo "gateway/baseline throughput per round: $(per_round "$level" "$proto" gateway baseline)"
        fi
        echo "gateway peak RSS under load: ${RSS[gateway]} MB"
    fi

    local g_shown l_shown=$l_ratio
    if failed gateway; then g_shown=FAILED; else g_shown=$(printf "%.0f" "${RPS[gateway]}"); fi
    if [ "${BAD[gateway]}" -gt 0 ]; then g_shown+=" (non-2xx)"; fi
    if [ "$proto" = h2 ]; then l_shown+=" (max)"; fi
    # Sorted later by protocol (in PROTOCOLS' order), then connections.
    printf "%s %s | %s | %s | %s | %s | %s | %s | %s | %s |\n" "$3" "$level" "$proto" "$level" "$g_shown" \
        "${best:-none}" "$(printf "%.0f" "$best_rps")" "$t_ratio" "$l_shown" "${RSS[gateway]}" >> "$summary"
}

runs_per_round=0
for proto in "${protocols[@]}"; do for _ in $(targets_of "$proto"); do runs_per_round=$((runs_per_round + 1)); done; done
say "$runs_per_round targets x ${#levels[@]} levels: about $(( ${#levels[@]} * runs_per_round * (warmup + rounds * duration) / 60 + 1 )) minutes"

for level in "${levels[@]}"; do
    # Warm-up, not measured: every target gets its connections, pools, caches and allocator
    # arenas in place at this level before the first round, so round 1 does not pay for them.
    say "warm-up at $level connections (${warmup}s each)"
    for proto in "${protocols[@]}"; do
        for name in $(targets_of "$proto"); do
            load "$proto" "$(url_of "$proto" "$name")" "$level" "$warmup" >/dev/null
        done
    done
    for round in $(seq 1 "$rounds"); do
        say "round $round/$rounds at $level connections (${duration}s each; ${protocols_arg})"
        for proto in "${protocols[@]}"; do
            for name in $(targets_of "$proto"); do
                set_active "$level.$proto.$name $(pids_of "$proto" "$name")"
                line=$(load "$proto" "$(url_of "$proto" "$name")" "$level" "$duration")
                set_active idle
                echo "$level $proto $name $round $line" >> "$results"
            done
        done
    done
    for i in "${!protocols[@]}"; do report "$level" "${protocols[$i]}" "$i"; done
done

echo
echo "## summary (median of $rounds rounds; best peer = the faster of nginx and haproxy among those answering only 2xx)"
echo
echo "| protocol | connections | gateway requests/s | best peer | peer requests/s | gateway/peer | p99 gateway/min peer | gateway peak RSS (MB) |"
echo "|---|---:|---:|---|---:|---:|---:|---:|"
sort -k1,1n -k2,2n "$summary" | cut -d' ' -f3-
echo
echo "(wrk -t2 -d${duration}s; h2load -t2 -m$h2_streams -D$duration (h2: max latency in place of p99); $(nproc) cores shared by the load generator, proxies and upstream; TLS: ECDSA P-256)"
