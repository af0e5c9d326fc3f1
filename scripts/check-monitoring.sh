#!/usr/bin/env bash
# Checks monitoring/ (docs/OBSERVABILITY.md, "Checks"):
#
#   scripts/check-monitoring.sh [static] [schema] [e2e]     default: static schema
#
#   static  promtool check config (prometheus.yml; prometheus-k8s.yml with its pod discovery
#           replaced by files, as Debian's Prometheus has no Kubernetes discovery, and its
#           relabelling run on sample pods: tests/monitoring/k8s_sd.py), promtool check rules,
#           promtool test rules (tests/monitoring/*.test.yml), tests/monitoring/lint.py, and the
#           dashboards up to date with monitoring/grafana/dashboards.py
#   schema  every dashboard type-checks against @grafana/schema (tools/grafana-validate), and
#           every dashboard of tests/monitoring/invalid-dashboards is rejected for its reason
#   e2e     `platform up` and a private Prometheus on free loopback ports: traffic, then every
#           recording rule and dashboard query must answer (tests/monitoring/e2e.py). The
#           binary is $PLATFORM_BIN, else the release or debug build under $CARGO_TARGET_DIR
#           (default ~/.cache/microservices-platform/target), the newer if both exist
#
# Installs Debian's prometheus (promtool) and PyYAML when missing; the schema check's npm
# packages come from tools/grafana-validate/package-lock.json, installed with `npm ci` once
# into a cache keyed by the lockfile (GRAFANA_VALIDATE_CACHE, default
# ~/.cache/microservices-platform/grafana-validate). Every process it starts is stopped when it
# ends. Exits non-zero on any problem.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

started=$(date +%s)
step() { echo; echo "==> [check-monitoring $(($(date +%s) - started))s] $*"; }
die() { echo "check-monitoring: $*" >&2; exit 1; }
# Every step is bounded: a hung tool fails the check instead of holding CI.
bounded() { local limit=$1; shift; timeout --kill-after=15 "$limit" "$@"; }
# The long steps run in the background and are waited for: a signal interrupts `wait` (not a
# foreground command), so SIGTERM or Ctrl-C stops the check at once, through the traps below.
child=""
long() {
    local limit=$1 status=0
    shift
    timeout --kill-after=15 "$limit" "$@" &
    child=$!
    wait "$child" || status=$?
    child=""
    return "$status"
}

parts=("$@")
[ "${#parts[@]}" -gt 0 ] || parts=(static schema)
for part in "${parts[@]}"; do
    case "$part" in
        static | schema | e2e) ;;
        *) die "unknown part '$part' (static, schema, e2e)" ;;
    esac
done
wants() { local part; for part in "${parts[@]}"; do [ "$part" = "$1" ] && return 0; done; return 1; }

work="$(mktemp -d)"
export MONITORING_PIDFILE="$work/pids"
: >"$MONITORING_PIDFILE"
# The Python checks stop what they start, also on SIGTERM (which timeout passes on from the
# `child` it runs); the pid file is for when they are killed outright. Each process they
# started leads a session of its own, so its process group is its pid.
cleanup() {
    local status=$? pid
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        kill -TERM "$child" 2>/dev/null || true
        for _ in $(seq 30); do kill -0 "$child" 2>/dev/null || break; sleep 0.5; done
    fi
    while read -r pid; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        fi
    done <"$MONITORING_PIDFILE"
    sleep 1
    while read -r pid; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
    done <"$MONITORING_PIDFILE"
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

step "tools"
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    echo "installing prometheus (apt: the server and promtool)"
    bounded 300 apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive bounded 300 apt-get install -y -q --no-install-recommends prometheus >/dev/null
fi
if ! python3 -c 'import yaml' 2>/dev/null; then
    echo "installing PyYAML (pip)"
    bounded 300 python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "PyYAML==6.0.3"
fi
echo "$(promtool --version 2>&1 | head -1); python $(python3 -c 'import platform, yaml; print(platform.python_version(), "PyYAML", yaml.__version__)')"

if wants static; then
    step "static: promtool check config (Compose)"
    bounded 60 promtool check config monitoring/prometheus/prometheus.yml

    step "static: prometheus-k8s.yml: promtool check config with file discovery, relabelling of sample pods"
    mkdir -p "$work/k8s"
    long 90 python3 tests/monitoring/k8s_sd.py "$work/k8s"

    step "static: promtool check rules"
    bounded 60 promtool check rules monitoring/prometheus/rules/*.yml

    step "static: promtool test rules (tests/monitoring/*.test.yml)"
    bounded 120 promtool test rules tests/monitoring/*.test.yml

    step "static: runbooks, a firing and a quiet test per alert, metrics documented, collector config"
    bounded 60 python3 tests/monitoring/lint.py

    step "static: dashboards up to date with monitoring/grafana/dashboards.py"
    bounded 60 python3 monitoring/grafana/dashboards.py --check
    echo "ok: $(find monitoring/grafana/dashboards -name '*.json' | wc -l) dashboards"
fi

if wants schema; then
    step "schema: dashboards against @grafana/schema (tsc --noEmit --strict)"
    tool="$root/tools/grafana-validate"
    # shellcheck source=scripts/lib/npm-tool.sh
    source "$root/scripts/lib/npm-tool.sh"
    cache=$(npm_tool_install "$tool" \
        "${GRAFANA_VALIDATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/microservices-platform/grafana-validate}") ||
        die "cannot install the validator's packages"
    NODE_PATH="$cache/node_modules" long 300 node "$tool/validate.js" monitoring/grafana/dashboards/*.json

    step "schema: the validator rejects invalid dashboards (tests/monitoring/invalid-dashboards)"
    NODE_PATH="$cache/node_modules" long 300 node "$tool/validate.js" --expect-invalid \
        tests/monitoring/invalid-dashboards/*.json
fi

if wants e2e; then
    step "e2e: platform up, Prometheus, traffic, every recording rule and dashboard query"
    target_dir="${CARGO_TARGET_DIR:-$HOME/.cache/microservices-platform/target}"
    bin="${PLATFORM_BIN:-}"
    if [ -z "$bin" ]; then
        # The release build, else the debug one; the newer when both exist, since a target
        # directory shared across checkouts can hold a release build of older code.
        for candidate in "$target_dir/release/platform" "$target_dir/debug/platform"; do
            if [ -x "$candidate" ] && { [ -z "$bin" ] || [ "$candidate" -nt "$bin" ]; }; then
                bin="$candidate"
            fi
        done
    fi
    echo "binary: $bin ($(date -r "$bin" -u '+%Y-%m-%d %H:%M UTC'))"
    if [ -z "$bin" ] || [ ! -x "$bin" ]; then
        die "no platform binary: set PLATFORM_BIN, or build one (cargo build -p platform) under $target_dir"
    fi
    mkdir -p "$work/e2e"
    long 280 python3 tests/monitoring/e2e.py --platform "$bin" --work "$work/e2e"
fi

step "done: ${parts[*]}"
