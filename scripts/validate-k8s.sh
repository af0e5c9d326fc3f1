#!/usr/bin/env bash
# Validates the Kubernetes manifests offline (no cluster needed):
#   1. renders k8s/base, both overlays (production with the external-secrets component) and
#      k8s/monitoring with `kubectl kustomize`;
#   2. validates every built-in object with `kubernetes-validate --strict` against Kubernetes
#      $K8S_VERSION, and every custom resource (ExternalSecret) against its CRD schema
#      (tests/deploy/k8s/crd-schemas, npm, pinned): a custom resource without a pinned schema fails;
#   3. runs the policy check (scripts/k8s-policy.py) on both overlays;
#   4. fails when k8s/staging/ differs from a fresh render of the staging overlay.
# Installs the pinned kubernetes-validate, PyYAML and npm packages when missing.
#
# Usage: scripts/validate-k8s.sh [--update] [--k8s-dir DIR]
#   --update       re-render k8s/staging/ first (scripts/render-k8s.sh), then validate
#   --k8s-dir DIR  validate another copy of k8s/ (the negative tests use a broken copy)
set -euo pipefail

K8S_VERSION=1.32.0
KUBERNETES_VALIDATE_VERSION=1.37.0
PYYAML_VERSION=6.0.3

repo="$(cd "$(dirname "$0")/.." && pwd)"
k8s_dir="$repo/k8s"
update=false
while [ $# -gt 0 ]; do
    case "$1" in
        --update) update=true ;;
        --k8s-dir) k8s_dir="$(cd "${2:?--k8s-dir needs a directory}" && pwd)"; shift ;;
        -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "validate-k8s: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

started=$(date +%s)
step() { echo "==> [$(($(date +%s) - started))s] $*"; }
failures=()
fail() { echo "FAIL: $*"; failures+=("$*"); }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# ---- tools -----------------------------------------------------------------------------------
step "tools"
if ! command -v kubectl >/dev/null; then
    echo "validate-k8s: kubectl not found. Install kubectl >= 1.27 (kustomize v5 built in), e.g. the" >&2
    echo "Debian/Ubuntu package 'kubectl' from the machine's configured apt sources." >&2
    exit 1
fi
if ! python3 -c 'import yaml' 2>/dev/null; then
    echo "installing PyYAML $PYYAML_VERSION"
    python3 -m pip install --quiet "pyyaml==$PYYAML_VERSION"
fi
if [ "$(kubernetes-validate --version 2>/dev/null || true)" != "$KUBERNETES_VALIDATE_VERSION" ]; then
    echo "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
    python3 -m pip install --quiet "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
crd_dir="$repo/tests/deploy/k8s/crd-schemas"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "validate-k8s: node and npm are needed to validate the custom resources (ExternalSecret)" >&2
    exit 1
fi
# npm ci writes node_modules/.package-lock.json: older than the lockfile (or absent) means stale.
if ! [ "$crd_dir/node_modules/.package-lock.json" -nt "$crd_dir/package-lock.json" ]; then
    echo "installing the CRD schemas (npm ci in tests/deploy/k8s/crd-schemas)"
    # The external-secrets models declare node >= 22 but run on node 20 (checked: they are
    # plain ajv validators); --engine-strict=false keeps that a warning.
    (cd "$crd_dir" && npm ci --no-audit --no-fund --engine-strict=false --loglevel=error)
fi
echo "kubectl $(kubectl version --client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')," \
    "kubernetes-validate $(kubernetes-validate --version), node $(node --version)," \
    "PyYAML $(python3 -c 'import yaml; print(yaml.__version__)')"

if $update; then
    step "re-rendering k8s/staging"
    "$repo/scripts/render-k8s.sh" "$k8s_dir"
fi

# ---- render ----------------------------------------------------------------------------------
step "kubectl kustomize"
# name -> kustomization directory. production-istio: production with components/istio, as
# DEPLOY_ISTIO=true deploys it (kustomize refuses absolute paths, hence the relative ones).
declare -A dirs=(
    [base]="$k8s_dir/base"
    [staging]="$k8s_dir/overlays/staging"
    [production]="$k8s_dir/overlays/production"
    [production-istio]="$tmp/production-istio"
    [monitoring]="$k8s_dir/monitoring"
)
targets=(base staging production production-istio monitoring)
mkdir -p "$tmp/production-istio"
rel() { python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$1" "$tmp/production-istio"; }
cat >"$tmp/production-istio/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(rel "$k8s_dir/overlays/production")
components:
  - $(rel "$k8s_dir/components/istio")
YAML
for target in "${targets[@]}"; do
    out="$tmp/$target.yaml"
    if kubectl kustomize "${dirs[$target]}" >"$out" 2>"$tmp/kustomize.err"; then
        echo "  $target: $(grep -c '^kind:' "$out") objects"
    else
        cat "$tmp/kustomize.err"
        fail "kubectl kustomize $target"
        rm -f "$out"
    fi
done

# ---- schemas ---------------------------------------------------------------------------------
step "schemas: kubernetes-validate --strict -k $K8S_VERSION; custom resources against their CRDs"
for target in "${targets[@]}"; do
    name="$target"
    [ -f "$tmp/$name.yaml" ] || continue
    echo "  $target:"
    printf '    '
    python3 "$repo/scripts/k8s-split.py" crds "$tmp/$name.yaml" "$tmp/$name.core.yaml" "$tmp/$name.custom.yaml"
    if ! kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$tmp/$name.core.yaml" >"$tmp/kv.out" 2>&1; then
        sed -e "s|$tmp/||g" -e 's/^/    /' "$tmp/kv.out"
        fail "kubernetes-validate $target"
    elif grep -q "Couldn't find schema" "$tmp/kv.out"; then
        # A kind kubernetes-validate does not know must not pass unchecked.
        sed -e "s|$tmp/||g" -e 's/^/    /' "$tmp/kv.out"
        fail "kubernetes-validate $target: object without a schema"
    else
        echo "    kubernetes-validate: $(grep -c '^kind:' "$tmp/$name.core.yaml") objects valid"
    fi
    if [ -s "$tmp/$name.custom.yaml" ]; then
        if node "$crd_dir/validate.mjs" "$tmp/$name.custom.yaml" >"$tmp/crd.out" 2>&1; then
            echo "    $(tail -n 1 "$tmp/crd.out")"
        else
            sed -e "s|$tmp/||g" -e 's/^/    /' "$tmp/crd.out"
            fail "CRD schemas $target"
        fi
    fi
done

# ---- policy ----------------------------------------------------------------------------------
step "policy (scripts/k8s-policy.py)"
for overlay in staging production production-istio; do
    render="$tmp/$overlay.yaml"
    [ -f "$render" ] || continue
    extra=()
    [ -f "$tmp/monitoring.yaml" ] && extra=("$tmp/monitoring.yaml")
    echo "  $overlay:"
    if python3 "$repo/scripts/k8s-policy.py" "$render" "${extra[@]}" >"$tmp/policy.out" 2>&1; then
        sed 's/^/    /' "$tmp/policy.out"
    else
        sed 's/^/    /' "$tmp/policy.out"
        fail "policy $overlay"
    fi
done

# ---- k8s/staging/ is the staging overlay rendered ---------------------------------------------
step "k8s/staging/ up to date"
mkdir -p "$tmp/fresh"
cp -r "$k8s_dir/base" "$k8s_dir/overlays" "$tmp/fresh/"
[ -d "$k8s_dir/components" ] && cp -r "$k8s_dir/components" "$tmp/fresh/"
if "$repo/scripts/render-k8s.sh" "$tmp/fresh" >/dev/null \
    && diff -r "$tmp/fresh/staging" "$k8s_dir/staging" >"$tmp/stale.diff" 2>&1; then
    echo "  k8s/staging/ matches the staging overlay"
else
    head -n 40 "$tmp/stale.diff"
    fail "k8s/staging/ is stale: run scripts/render-k8s.sh (or scripts/validate-k8s.sh --update) and commit it"
fi

# ---- result ----------------------------------------------------------------------------------
step "done"
if [ "${#failures[@]}" -gt 0 ]; then
    echo "validate-k8s: ${#failures[@]} check(s) failed:"
    printf '  - %s\n' "${failures[@]}"
    exit 1
fi
echo "validate-k8s: all checks passed"
