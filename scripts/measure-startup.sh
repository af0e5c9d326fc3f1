#!/usr/bin/env bash
# Measures `platform up` (release build): time from exec to the gateway answering /ready with
# 200 (the user service behind it is ready too), idle resident memory, and time to stop on
# SIGINT. Runs RUNS times (default 5) on fresh data directories and prints each run and the
# median. Usage: scripts/measure-startup.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
target=${CARGO_TARGET_DIR:-target}
echo "building the release binary (cargo build --release -p platform)..." >&2
cargo build --release -q -p platform
bin="$target/release/platform"
port=18080

now_ms() { date +%s%3N; }
startups=() rsss=() stops=()
for run in $(seq 1 "$runs"); do
    data=$(mktemp -d)
    start=$(now_ms)
    PORT=$port USER_SERVICE_PORT=18081 USER_SERVICE_GRPC_PORT=19081 DATA_DIR="$data" RUST_LOG=warn \
        "$bin" >/dev/null 2>&1 &
    pid=$!
    until curl -fs -o /dev/null "http://127.0.0.1:$port/ready"; do
        if ! kill -0 "$pid" 2>/dev/null; then echo "platform exited during start-up" >&2; exit 1; fi
        sleep 0.005
    done
    ready=$(( $(now_ms) - start ))
    sleep 2
    rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    stop_start=$(now_ms)
    kill -INT "$pid"
    wait "$pid"
    stopped=$(( $(now_ms) - stop_start ))
    rm -rf "$data"
    echo "run $run: ready in ${ready} ms, idle RSS $((rss_kib / 1024)) MiB (${rss_kib} KiB), stopped in ${stopped} ms"
    startups+=("$ready") rsss+=("$rss_kib") stops+=("$stopped")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median of $runs: ready in $(median "${startups[@]}") ms, idle RSS $(( $(median "${rsss[@]}") / 1024 )) MiB, stop in $(median "${stops[@]}") ms"
