#!/usr/bin/env bash
# Property-based API fuzzing of the merged OpenAPI document (issue: an exact contract).
# Starts a private platform on 127.0.0.1 (or uses BASE_URL), then runs Schemathesis with every
# check, as an administrator and as a plain user, with a fixed seed (printed; SEED=… repeats a
# run). Exits non-zero on any failure.
#
#   scripts/api-fuzz.sh                     # PLATFORM_BIN or the debug/release build
#   SEED=7 EXAMPLES=50 scripts/api-fuzz.sh
#   BASE_URL=http://127.0.0.1:8080 ADMIN_EMAIL=… ADMIN_PASSWORD=… scripts/api-fuzz.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
st_version=4.32.5
venv="${XDG_CACHE_HOME:-$HOME/.cache}/microservices-platform/schemathesis-$st_version"
seed=${SEED:-$((RANDOM * 32768 + RANDOM))}
examples=${EXAMPLES:-10}
# Each pass's whole report is kept here (the failures are also printed).
reports=${FUZZ_REPORT_DIR:-${CARGO_TARGET_DIR:-$repo/target}/contract}
mkdir -p "$reports"
say() { echo "api-fuzz [$SECONDS s]: $*" >&2; }

if [ ! -x "$venv/bin/st" ]; then
    say "installing Schemathesis $st_version into $venv (once)"
    python3 -m venv "$venv"
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
    for _ in $(seq 1 300); do
        curl -fs -o /dev/null "$BASE_URL/api/v1/products" && break
        kill -0 "$pid" 2>/dev/null || { cat "$work/platform.log" >&2; exit 2; }
        sleep 0.2
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
for who in admin user; do
    token=$admin_token
    [ "$who" = user ] && token=$user_token
    say "$who: schemathesis $st_version, every check, $examples examples per operation, seed $seed"
    if ! "$venv/bin/st" --config-file "$repo/tests/contract/schemathesis.toml" \
        run "$BASE_URL/openapi.json" -H "Authorization: Bearer $token" \
        --checks all --seed "$seed" --max-examples "$examples" --workers 2 \
        --request-timeout 20 --no-color > "$reports/$who.txt" 2>&1; then
        failed=1
        # The failures and errors, each with its reproducing curl, up to the summary.
        sed -n '/^=* \(ERRORS\|FAILURES\) =*$/,/^=* SUMMARY =*$/p' "$reports/$who.txt" >&2
    fi
    grep -E "generated|failures|passed" "$reports/$who.txt" | tail -2 >&2
    say "$who: the whole report is $reports/$who.txt"
done
say "seed $seed: $([ $failed = 0 ] && echo 'no failures' || echo FAILURES)"
exit $failed
