#!/usr/bin/env bash
# Tracing overhead: three identical platforms (release build, embedded SQLite): one exporting
# every span over OTLP (sampler always on) to a receiver that counts and drops them
# (platform/examples/otlp_sink.rs), one sampling a tenth of the traces it starts
# (parentbased_traceidratio 0.1, a usual production setting) to the same receiver, and one
# exporting nothing, measured interleaved in one run:
#   - product: GET /api/v1/products/{id} through the gateway (gateway + product service);
#   - orders:  POST /api/v1/orders, the whole checkout saga (gRPC calls, database, events).
# Prints requests/s, p50 and p99 for each, the traced/untraced ratios, and the spans received.
#
# Usage: scripts/bench-tracing.sh [SECONDS_PER_RUN] [ROUNDS] [CONNECTIONS]
# Installs wrk from Debian's packages when missing; BENCH_SKIP_BUILD=1 reuses the release
# binaries already built. Everything runs on 127.0.0.1.
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
    say "building the release binary and the OTLP sink"
    cargo build --release -q -p platform --bin platform --example otlp_sink
fi
platform_bin="$target/release/platform"
sink_bin="$target/release/examples/otlp_sink"
work=$(mktemp -d)

# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

SINK=18750
"$sink_bin" "127.0.0.1:$SINK" > "$work/sink.count" 2> "$work/sink.log" &
sink_pid=$!
pids+=("$sink_pid")
say "starting three platforms (two exporting spans to 127.0.0.1:$SINK)"
start untraced 18730
start traced 18740 OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$SINK" OTEL_TRACES_SAMPLER=always_on
start sampled 18760 OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$SINK" \
    OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1
read -r token product < <(prepare 18730)
read -r token_t product_t < <(prepare 18740)
read -r token_s product_s < <(prepare 18760)
write_post_lua

results="$work/results"
for round in $(seq 1 "$rounds"); do
    say "round $round/$rounds (${duration}s each, $connections connections)"
    {
        run_get product-untraced "http://127.0.0.1:18730/api/v1/products/$product"
        run_get product-traced "http://127.0.0.1:18740/api/v1/products/$product_t"
        run_get product-sampled "http://127.0.0.1:18760/api/v1/products/$product_s"
        run orders-untraced orders 18730 "$token" "$product"
        run orders-traced orders 18740 "$token_t" "$product_t"
        run orders-sampled orders 18760 "$token_s" "$product_s"
    } >> "$results"
done

kill "$sink_pid"
wait "$sink_pid" 2>/dev/null || true
spans=$(cat "$work/sink.count")

declare -A RPS P50 P99 BAD
kinds="product-untraced product-traced product-sampled orders-untraced orders-traced orders-sampled"
for kind in $kinds; do
    RPS[$kind]=$(awk -v k="$kind" '$1==k {print $2}' "$results" | median)
    P50[$kind]=$(awk -v k="$kind" '$1==k {print $3}' "$results" | median)
    P99[$kind]=$(awk -v k="$kind" '$1==k {print $4}' "$results" | median)
    BAD[$kind]=$(awk -v k="$kind" '$1==k {s+=$5} END {print s+0}' "$results")
done
echo
echo "| request | spans | requests/s | p50 (ms) | p99 (ms) | non-2xx |"
echo "|---|---|---:|---:|---:|---:|"
for kind in $kinds; do
    case $kind in
        product-*) what="GET /api/v1/products/{id}" ;;
        *) what="POST /api/v1/orders (checkout saga)" ;;
    esac
    printf "| %s | %s | %.0f | %s | %s | %s |\n" "$what" "${kind#*-}" "${RPS[$kind]}" "${P50[$kind]}" "${P99[$kind]}" "${BAD[$kind]}"
done
echo
awk -v a="${RPS[product-traced]}" -v b="${RPS[product-untraced]}" -v c="${RPS[orders-traced]}" -v d="${RPS[orders-untraced]}" \
    -v e="${RPS[product-sampled]}" -v f="${RPS[orders-sampled]}" \
    'BEGIN { printf "throughput traced (all) / untraced: product %.2f, checkout %.2f\nthroughput sampled (10%%) / untraced: product %.2f, checkout %.2f\n", a/b, c/d, e/b, f/d }'
echo "spans received by the sink: $spans"
echo "(median of $rounds rounds; wrk -t2 -c$connections -d${duration}s through the gateway; embedded SQLite; $(nproc) cores shared by wrk, the platforms and the sink)"
