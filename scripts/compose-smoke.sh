#!/usr/bin/env bash
# The platform in real containers: build the images, start PostgreSQL, Redis, Prometheus, every
# service and the gateway with Compose (on podman here), run the main journey through the
# gateway's port on 127.0.0.1, check that Prometheus scrapes every part and answers the Grafana
# dashboards' queries, run a PostgreSQL suite against the integration environment
# (docker-compose.test.yml), then tear everything down, leaving no container, network or volume
# behind. Exits non-zero on any failure.
#
#   scripts/compose-smoke.sh              (make compose-smoke; root, as it may install podman)
#
# Upstream images cannot be pulled here, so docker-compose.ci.yml swaps PostgreSQL, Redis and
# Prometheus for images built from Debian's packages, and leaves Jaeger and Grafana out.
# SMOKE_KEEP=1 leaves the platform running for a look.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
say() { echo "compose-smoke [$(( $(date +%s) - started ))s]: $*" >&2; }
# Every podman and Compose call is bounded: a wedged container engine fails the run, never hangs it.
bounded() { local limit=$1; shift; timeout --kill-after=10 "$limit" "$@"; }

eval "$(scripts/container-tools.sh --env)"
export DOCKER_HOST
project="mp-smoke-$$"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GATEWAY_PORT=$(free_port)
PROMETHEUS_PORT=$(free_port)
export GATEWAY_PORT PROMETHEUS_PORT
# COMPOSE_LIMIT=N before a call bounds it more tightly than the default 10 minutes.
compose() { bounded "${COMPOSE_LIMIT:-600}" docker-compose -p "$project" -f docker-compose.yml -f docker-compose.ci.yml "$@"; }

say "images: base, PostgreSQL, Redis, Prometheus (local), and the platform's"
scripts/compose-images.sh
scripts/docker-build.sh

say "images: non-root, labelled, health-checked, no shell"
registry="${DOCKER_REGISTRY:-localhost/microservices-platform}"
version="${VERSION:-$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)}"
for service in api-gateway user-service product-service order-service payment-service notification-service event-store; do
    image="$registry/$service:$version"
    facts=$(podman image inspect "$image" --format '{{.Config.User}}|{{index .Config.Labels "org.opencontainers.image.version"}}|{{index .Config.Labels "org.opencontainers.image.revision"}}|{{json .Config.Healthcheck.Test}}|{{range .Config.Env}}{{.}} {{end}}')
    IFS='|' read -r user label_version revision healthcheck env <<<"$facts"
    [ "$user" = "65532:65532" ] || { say "$image runs as '$user', not 65532:65532"; exit 1; }
    if [ "$label_version" != "$version" ] || [ -z "$revision" ]; then say "$image lacks its version/revision labels"; exit 1; fi
    [[ "$healthcheck" == *platform*probe* ]] || { say "$image has no HEALTHCHECK ($healthcheck)"; exit 1; }
    [[ " $env " == *" PLATFORM_SERVICE=$service "* ]] || { say "$image does not run $service ($env)"; exit 1; }
    for shell in /bin/sh /bin/bash /usr/bin/sh; do
        if podman run --rm --read-only --entrypoint "$shell" "$image" -c true >/dev/null 2>&1; then
            say "$image has a shell ($shell)"
            exit 1
        fi
    done
done

# Removes the project's containers, networks and volumes with podman directly (no Compose).
remove_project() {
    local label kind ids
    for label in "$project" "$project-test"; do
        for kind in container network volume; do
            ids=$(bounded 30 podman "$kind" ls -a -q --filter "label=com.docker.compose.project=$label" 2>/dev/null ||
                bounded 30 podman "$kind" ls -q --filter "label=com.docker.compose.project=$label" 2>/dev/null || true)
            if [ -n "$ids" ]; then
                # shellcheck disable=SC2086 # one id per word
                bounded 60 podman "$kind" rm -f $ids >/dev/null 2>&1 || true
            fi
        done
    done
}
healthchecks_pid=""
test_project=""
teardown() {
    local status=$?
    if [ -n "$healthchecks_pid" ]; then kill "$healthchecks_pid" 2>/dev/null || true; fi
    if [ "$status" -ne 0 ]; then
        say "FAILED: every container's status, then the last lines of each one's log"
        COMPOSE_LIMIT=30 compose ps -a >&2 || true
        for service in $(compose config --services 2>/dev/null); do
            echo "--- $service" >&2
            COMPOSE_LIMIT=30 compose logs --no-color --tail 25 "$service" 2>&1 | cut -c1-600 >&2 || true
        done
    fi
    if [ "${SMOKE_KEEP:-0}" = 1 ]; then
        say "left running (project $project): docker-compose -p $project -f docker-compose.yml -f docker-compose.ci.yml down -v"
        exit "$status"
    fi
    say "tearing down"
    COMPOSE_LIMIT=120 compose down --volumes --remove-orphans --timeout 40 >/dev/null 2>&1 || true
    if [ -n "$test_project" ]; then
        bounded 120 docker-compose -p "$test_project" -f docker-compose.test.yml down --volumes --remove-orphans >/dev/null 2>&1 || true
    fi
    # What Compose could not remove (a wedged API service) goes by podman itself.
    remove_project
    local left
    left=$(bounded 30 podman ps -a -q --filter "label=com.docker.compose.project=$project" | wc -l)
    left=$((left + $(bounded 30 podman network ls -q --filter "label=com.docker.compose.project=$project" | wc -l)))
    left=$((left + $(bounded 30 podman volume ls -q --filter "label=com.docker.compose.project=$project" | wc -l)))
    if [ "$left" -ne 0 ]; then
        say "teardown left $left containers, networks or volumes of $project behind"
        status=1
    fi
    say "finished with status $status"
    exit "$status"
}
trap teardown EXIT
# A bound from outside (timeout in .ci/run) still tears down.
trap 'exit 143' TERM INT

# Podman runs health checks from systemd timers, and this machine has no systemd: run each
# starting or running container's check every 2 s instead, as the timer would.
# (One `podman ps` per project: podman ANDs repeated label filters, so one call naming both
# projects matches nothing, and nothing would ever turn healthy.)
drive_healthchecks() {
    local label id
    while true; do
        for label in "$project" "$project-test"; do
            for id in $(bounded 20 podman ps -q --filter "label=com.docker.compose.project=$label"); do
                bounded 20 podman healthcheck run "$id" >/dev/null 2>&1 || true
            done
        done
        sleep 2
    done
}
if ! pidof systemd >/dev/null 2>&1; then
    drive_healthchecks &
    healthchecks_pid=$!
fi

say "docker-compose up: PostgreSQL, Redis, every service, the gateway, Prometheus"
# Podman 4.3's API service can wedge while several containers start at once (seen once in CI:
# five `Starting` that never returned). Start one container at a time, bound the wait, and on a
# wedge restart the API service and try once more rather than hang the whole run.
export COMPOSE_PARALLEL_LIMIT=1
if ! COMPOSE_LIMIT="${SMOKE_UP_TIMEOUT:-300}" compose up -d --quiet-pull api-gateway prometheus >&2; then
    say "docker-compose up did not finish within ${SMOKE_UP_TIMEOUT:-300} s: container states, then a restart of the podman API service and one more try"
    bounded 30 podman ps -a --filter "label=com.docker.compose.project=$project" --format '{{.Names}} {{.Status}}' >&2 || true
    remove_project
    scripts/container-tools.sh --restart-service >&2
    COMPOSE_LIMIT="${SMOKE_UP_TIMEOUT:-300}" compose up -d --quiet-pull api-gateway prometheus >&2 ||
        { say "docker-compose up failed twice"; exit 1; }
fi
gateway="http://127.0.0.1:$GATEWAY_PORT"
for _ in $(seq 120); do
    curl -sf "$gateway/ready" >/dev/null 2>&1 && break
    sleep 1
done
curl -sf "$gateway/ready" >/dev/null || { say "the gateway never became ready"; exit 1; }
say "gateway ready on $gateway"
compose ps --format 'table {{.Service}}\t{{.Status}}' >&2

say "main journey through the gateway"
tests/e2e/journey.py "$gateway" --timeout 60

say "Prometheus: every target up"
prometheus="http://127.0.0.1:$PROMETHEUS_PORT"
expected="api-gateway event-store notification-service order-service payment-service product-service user-service"
for attempt in $(seq 30); do
    if curl -sf "$prometheus/api/v1/query?query=up" | python3 -c '
import json, sys
expected = set(sys.argv[1].split())
result = json.load(sys.stdin)["data"]["result"]
up = {r["metric"].get("instance") for r in result if r["metric"].get("job") == "platform" and r["value"][1] == "1"}
down = {r["metric"].get("instance") for r in result if r["metric"].get("job") == "platform" and r["value"][1] != "1"}
missing = expected - up
print(f"up: {sorted(up)}; down: {sorted(down)}; not yet up: {sorted(missing)}", file=sys.stderr)
sys.exit(0 if not missing else 1)' "$expected"; then
        break
    fi
    [ "$attempt" -lt 30 ] || { say "Prometheus does not see every target up"; exit 1; }
    sleep 2
done
say "Grafana's provisioned dashboards: every query valid, and answered from the live metrics"
python3 - "$prometheus" monitoring/grafana/dashboards/platform-overview.json <<'PY'
import json, sys, time, urllib.parse, urllib.request
prometheus = sys.argv[1]
queries = [(path.rsplit("/", 1)[-1], panel["title"], target["expr"])
           for path in sys.argv[2:] for panel in json.load(open(path))["panels"]
           for target in panel.get("targets", [])]

def check(expr):
    url = prometheus + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        answer = json.load(urllib.request.urlopen(url, timeout=10))
    except Exception:  # Prometheus answers 400 to an invalid query
        return False
    # An error ratio is empty while nothing fails; everything else must have series.
    return answer["status"] == "success" and ("5.." in expr or bool(answer["data"]["result"]))

# rate() over a minute needs two scrapes of traffic: give the new stack up to a minute.
for attempt in range(30):
    results = [(name, title, check(expr)) for name, title, expr in queries]
    if all(ok for _, _, ok in results):
        break
    time.sleep(2)
for name, title, ok in results:
    print(f"  {'ok ' if ok else 'BAD'} {name}: {title}", file=sys.stderr)
sys.exit(0 if all(ok for _, _, ok in results) else 1)
PY
say "the integration environment (docker-compose.test.yml): servers up, found, used by a suite"
test_project="$project-test"
TEST_POSTGRES_PORT=$(free_port)
TEST_REDIS_PORT=$(free_port)
export TEST_POSTGRES_PORT TEST_REDIS_PORT
test_compose() {
    POSTGRES_IMAGE=localhost/microservices-platform/postgres:15 REDIS_IMAGE=localhost/microservices-platform/redis:7 \
        bounded "${COMPOSE_LIMIT:-300}" docker-compose -p "$test_project" -f docker-compose.test.yml "$@"
}
test_compose up -d --wait >&2
mapfile -t urls < <(scripts/test-services.sh)
env "${urls[@]}" TEST_REQUIRE_BACKENDS=1 cargo test --locked -q -p platform-db >&2
COMPOSE_LIMIT=120 test_compose down --volumes --remove-orphans >/dev/null 2>&1
if [ -n "$(podman ps -a -q --filter "label=com.docker.compose.project=$test_project")" ]; then
    say "docker-compose.test.yml left containers behind"
    exit 1
fi
say "passed"
