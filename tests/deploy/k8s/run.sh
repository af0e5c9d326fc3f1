#!/usr/bin/env bash
# Tests of the Kubernetes validation: the policy's unit tests (test_policy.py: one breakage per
# test, in memory), then scripts/validate-k8s.sh end to end on a broken copy of k8s/, which must
# fail and name every breakage: a root container, a :latest image, an unknown field, an invalid
# ExternalSecret, a custom resource with no pinned schema, and a stale k8s/staging/.
# Prints "N passed, N failed"; exits non-zero on any failure.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../../.." && pwd)"
here="$repo/tests/deploy/k8s"
passed=0
failed=0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "==> policy unit tests"
if python3 "$here/test_policy.py" 2>&1 | tee "$tmp/unit.out" | tail -n 3; then :; fi
unit_line="$(grep -E '^policy tests: [0-9]+ passed, [0-9]+ failed$' "$tmp/unit.out" || true)"
if [ -z "$unit_line" ]; then
    echo "FAIL: test_policy.py did not report"
    failed=$((failed + 1))
else
    passed=$((passed + $(echo "$unit_line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')))
    failed=$((failed + $(echo "$unit_line" | sed -E 's/.* ([0-9]+) failed$/\1/')))
fi

echo "==> validate-k8s.sh on a broken copy of k8s/"
cp -r "$repo/k8s" "$tmp/k8s"
cd "$tmp/k8s"
# 1. root: the user service's container runs as uid 0.
python3 - <<'PY'
from pathlib import Path
p = Path("base/user-service/deployment.yaml")
text = p.read_text()
head, sep, tail = text.partition("      containers:")
p.write_text(head + sep + tail.replace("runAsUser: 65532", "runAsUser: 0", 1))
# 2. :latest in production.
p = Path("overlays/production/kustomization.yaml")
text = p.read_text()
at = text.index("name: payment-service")
p.write_text(text[:at] + text[at:].replace('newTag: "0.1.0"', "newTag: latest", 1))
# 3. an unknown field (a typo of `replicas`).
p = Path("base/order-service/deployment.yaml")
p.write_text(p.read_text().replace("  revisionHistoryLimit: 5\n", "  revisionHistoryLimit: 5\n  replica: 3\n", 1))
# 4. an invalid ExternalSecret.
p = Path("components/external-secrets/external-secrets.yaml")
p.write_text(p.read_text().replace("kind: ClusterSecretStore", "kind: SecretStoreCluster", 1))
# 5. a custom resource nobody pinned a schema for.
Path("overlays/production/servicemonitor.yaml").write_text(
    "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata:\n  name: platform\n"
    "spec:\n  selector: {}\n  endpoints: [{port: metrics}]\n")
p = Path("overlays/production/kustomization.yaml")
p.write_text(p.read_text().replace("  - ingress.yaml\n", "  - ingress.yaml\n  - servicemonitor.yaml\n", 1))
PY
cd "$repo"
set +e
scripts/validate-k8s.sh --k8s-dir "$tmp/k8s" >"$tmp/broken.out" 2>&1
status=$?
set -e
expect() {
    local what="$1" pattern="$2"
    if grep -qE -- "$pattern" "$tmp/broken.out"; then
        echo "ok    rejects $what"
        passed=$((passed + 1))
    else
        echo "FAIL  does not reject $what (no line matching: $pattern)"
        failed=$((failed + 1))
    fi
}
if [ "$status" -ne 0 ]; then
    echo "ok    exits $status on the broken copy"
    passed=$((passed + 1))
else
    echo "FAIL  exits 0 on the broken copy"
    failed=$((failed + 1))
fi
expect "a container running as root" "POLICY .*Deployment/microservices/user-service: .*containers\[user-service\]\.securityContext\.runAsUser: runs as root"
expect "a :latest image" "POLICY .*Deployment/microservices/payment-service: .*\.image: .*:latest"
expect "an unknown field (strict schema)" "ERROR .*deployment/order-service .*'replica' was unexpected"
expect "an invalid ExternalSecret (CRD schema)" "ERROR ExternalSecret/platform-jwt .*secretStoreRef/kind"
expect "a custom resource without a pinned schema" "ERROR ServiceMonitor/platform .*no pinned schema"
expect "a stale k8s/staging/" "FAIL: k8s/staging/ is stale"
if [ "$failed" -gt 0 ]; then
    echo "--- validate-k8s.sh output ---"
    cat "$tmp/broken.out"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
