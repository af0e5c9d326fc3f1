#!/usr/bin/env bash
# `make dev-up`: the whole platform in one process (`cargo run --release`). On embedded
# defaults (SQLite files, the embedded bus) unless the Compose servers are running
# (`docker-compose up -d postgres redis jaeger prometheus grafana`): then against them —
# PostgreSQL (one database, a schema per service), Redis (bus, cache, revocations) and Jaeger
# (traces). Variables already set win.
set -euo pipefail
cd "$(dirname "$0")/.."

engine="${CONTAINER_ENGINE:-$(command -v podman || command -v docker || true)}"
running() { # service: is the Compose project's container for it running?
    [ -n "$engine" ] && [ -n "$("$engine" ps -q \
        --filter label=com.docker.compose.project=microservices-platform \
        --filter "label=com.docker.compose.service=$1" 2>/dev/null)" ]
}

if [ -z "${DATABASE_URL:-}" ] && running postgres; then
    export DATABASE_URL="postgres://postgres:${POSTGRES_PASSWORD:-platform}@127.0.0.1:${POSTGRES_PORT:-5432}/platform"
    export SEED_DEMO_DATA="${SEED_DEMO_DATA:-true}"
    echo "dev-up: PostgreSQL from Compose (127.0.0.1:${POSTGRES_PORT:-5432}/platform, a schema per service)"
fi
if [ -z "${REDIS_URL:-}" ] && running redis; then
    export REDIS_URL="redis://127.0.0.1:${REDIS_PORT:-6379}"
    echo "dev-up: Redis from Compose ($REDIS_URL)"
fi
if [ -z "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ] && running jaeger; then
    export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:${OTLP_PORT:-4317}"
    echo "dev-up: traces to Jaeger (UI on http://127.0.0.1:${JAEGER_UI_PORT:-16686})"
fi
[ -n "${DATABASE_URL:-}" ] || echo "dev-up: embedded defaults (SQLite files under ./data)"
exec "${CARGO:-cargo}" run --release
