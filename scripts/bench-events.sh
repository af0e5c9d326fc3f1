#!/usr/bin/env bash
# Event throughput, outbox -> relay -> bus -> consumer, on the embedded bus and on Redis
# Streams in one run (Redis is started if needed). Usage: scripts/bench-events.sh [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20000}
eval "export $(scripts/test-services.sh | grep TEST_REDIS_URL | sed 's/TEST_REDIS_URL/REDIS_URL/')"
echo "building (release)..." >&2
cargo build --release -q -p platform-events --example events_throughput
cargo run --release -q -p platform-events --example events_throughput -- "$n"
