#!/usr/bin/env bash
# Property-based API fuzzing of the merged OpenAPI document (issue: an exact contract).
# Starts a private platform on 127.0.0.1 (or uses BASE_URL), then runs Schemathesis with every
# check, as an administrator and as a plain user, with a fixed seed (printed; SEED=… repeats a
# run). Exits non-zero on any failure.
#
#   scripts/api-fuzz.sh                     # PLATFORM_BIN or the debug/release build
#   SEED=7 EXAMPLES=50 STATEFUL_EXAMPLES=100 scripts/api-fuzz.sh
#   BASE_URL=http://127.0.0.1:8080 ADMIN_EMAIL=… ADMIN_PASSWORD=… scripts/api-fuzz.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
st_version=4.32.5
# Python before 3.13 can fail ast.parse when two threads call it at once ("AST constructor
# recursion depth mismatch", CPython gh-106905), which Hypothesis does while Schemathesis runs
# workers in parallel: a crash of the tool, reported as an error. So: Python 3.13 or later when
# there is one (on PATH or under pyenv), with two workers; else python3 with one.
python=""
for candidate in python3.14 python3.13; do
    if "$candidate" -c '' 2>/dev/null; then python=$(command -v "$candidate"); break; fi
done
if [ -z "$python" ] && command -v pyenv >/dev/null; then
    for version in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[3-9])(\.[0-9]+)?$' | sort -V); do
        if [ -x "$(pyenv root)/versions/$version/bin/python3" ]; then python="$(pyenv root)/versions/$version/bin/python3"; fi
    done
fi
workers=2
if [ -z "$python" ]; then python=python3; workers=1; fi
py_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
venv="${XDG_CACHE_HOME:-$HOME/.cache}/microservices-platform/schemathesis-$st_version-py$py_version"
seed=${SEED:-$((RANDOM * 32768 + RANDOM))}
examples=${EXAMPLES:-10}
stateful_examples=${STATEFUL_EXAMPLES:-200}
# Each pass's whole report is kept here (the failures are also printed).
reports=${FUZZ_REPORT_DIR:-${CARGO_TARGET_DIR:-$repo/target}/contract}
mkdir -p "$reports"
say() { echo "api-fuzz [$SECONDS s]: $*" >&2; }

if [ ! -x "$venv/bin/st" ]; then
    say "installing Schemathesis $st_version into $venv (once; Python $py_version)"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$st_version"
fi

work=$(mktemp -d)
pid=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

admin_email=${ADMIN_EMAIL:-fuzz-admin@example.com}
admin_password=${ADMIN_PASSWORD:-"fuzz admin password 123"}
if [ -z "${BASE_URL:-}" ]; then
    target=${CARGO_TARGET_DIR:-$repo/target}
    bin=${PLATFORM_BIN:-}
    [ -z "$bin" ] && for candidate in "$target/release/platform" "$target/debug/platform"; do
        [ -x "$candidate" ] && bin=$candidate && break
    done
    [ -x "$bin" ] || { say "no platform binary: build one (cargo build -p platform) or set PLATFORM_BIN"; exit 2; }
    # A free port, asked of the kernel, may be taken by another program's outgoing connection
    # before the platform binds it (it is in the ephemeral range): then try another.
    for attempt in 1 2 3; do
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        say "starting $bin on 127.0.0.1:$port (embedded SQLite under $work)"
        env -i PATH="$PATH" HOME="$HOME" DATA_DIR="$work" PORT="$port" HOST=127.0.0.1 \
            USER_SERVICE_PORT=0 USER_SERVICE_GRPC_PORT=0 PRODUCT_SERVICE_PORT=0 PRODUCT_SERVICE_GRPC_PORT=0 \
            PAYMENT_SERVICE_PORT=0 PAYMENT_SERVICE_GRPC_PORT=0 ORDER_SERVICE_PORT=0 ORDER_SERVICE_GRPC_PORT=0 \
            NOTIFICATION_SERVICE_PORT=0 EVENT_STORE_PORT=0 RATE_LIMIT_PER_MINUTE=0 LOG_LEVEL=warn \
            ADMIN_EMAIL="$admin_email" ADMIN_PASSWORD="$admin_password" \
            ARGON2_MEMORY_KIB=1024 ARGON2_ITERATIONS=1 "$bin" > "$work/platform.log" 2>&1 &
        pid=$!
        BASE_URL="http://127.0.0.1:$port"
        up=0
        for _ in $(seq 1 300); do
            curl -fs -o /dev/null "$BASE_URL/api/v1/products" && { up=1; break; }
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        [ "$up" = 1 ] && break
        if [ "$attempt" -lt 3 ] && ! kill -0 "$pid" 2>/dev/null && grep -q "Address already in use" "$work/platform.log"; then
            say "port $port was taken meanwhile; trying another"
            rm -rf "${work:?}"/*
            continue
        fi
        cat "$work/platform.log" >&2
        exit 2
    done
fi

login() {
    curl -fs "$BASE_URL/api/v1/auth/login" -H 'content-type: application/json' \
        -d "{\"email\":\"$1\",\"password\":\"$2\"}" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
user_email="fuzz-user-$seed@example.com"
curl -fs -o /dev/null "$BASE_URL/api/v1/users" -H 'content-type: application/json' \
    -d "{\"email\":\"$user_email\",\"password\":\"fuzz user password 123\",\"name\":\"Fuzz\"}"
user_token=$(login "$user_email" "fuzz user password 123")
admin_token=$(login "$admin_email" "$admin_password")

failed=0
# One Schemathesis run: its report kept, its failures and errors (each with its reproducing
# curl) printed.
fuzz() {
    local who=$1 token=$2 report=$3
    shift 3
    if ! "$venv/bin/st" --config-file "$repo/tests/contract/schemathesis.toml" \
        run "$BASE_URL/openapi.json" -H "Authorization: Bearer $token" \
        --checks all --seed "$seed" --workers "$workers" --request-timeout 20 --no-color \
        "$@" > "$reports/$report.txt" 2>&1; then
        failed=1
        sed -n '/^=* \(ERRORS\|FAILURES\) =*$/,/^=* SUMMARY =*$/p' "$reports/$report.txt" >&2
    fi
    grep -E "generated|failures|passed|API Links" "$reports/$report.txt" | tail -3 >&2
    say "$who: the whole report is $reports/$report.txt"
}
for who in admin user; do
    token=$admin_token
    [ "$who" = user ] && token=$user_token
    say "$who: schemathesis $st_version (Python $py_version, $workers workers), every check, $examples examples per operation, seed $seed"
    fuzz "$who" "$token" "$who" --phases examples,coverage,fuzzing --max-examples "$examples"
    # Sequences through the document's links (create, then read, change, cancel what was
    # made): cheap next to the other phases, so with more examples of their own.
    say "$who: stateful sequences through the links, $stateful_examples examples"
    fuzz "$who" "$token" "$who-stateful" --phases stateful --max-examples "$stateful_examples"
done
say "seed $seed: $([ $failed = 0 ] && echo 'no failures' || echo FAILURES)"
exit $failed
