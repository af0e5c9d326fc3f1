#!/usr/bin/env bash
# Tests of scripts/deploy.sh and scripts/validate-istio.sh. No cluster: the --dry-run cases read
# the rendered files; the cluster cases put a fake kubectl (tests/deploy/fake-bin) on PATH that
# records its calls, and assert their order (apply, rollout status, patch of the selector...).
# Needs what the dry-run's validation needs: kubectl, python3 + PyYAML, kubernetes-validate,
# node + npm. Prints each case; exits non-zero when one fails.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/tests/deploy"
deploy="$root/scripts/deploy.sh"
REAL_KUBECTL="$(command -v kubectl)"
export REAL_KUBECTL
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
current=""
case_started=0
case_() {
    current=$1
    case_started=$(date +%s)
    echo "--- $current"
}
ok() { passed=$((passed + 1)); echo "ok   $current ($(($(date +%s) - case_started))s)"; }
bad() { failed=$((failed + 1)); echo "FAIL $current: $*"; }

# check CONDITION-COMMAND... : runs it; a false result fails the case with the message.
expect() { # message command...
    local message=$1
    shift
    if "$@"; then return 0; fi
    bad "$message"
    return 1
}

# Weights of the routes to SERVICE in a rendered Istio file: "stable/canary" per route, unique.
weights() { # file service
    python3 - "$1" "$2" <<'PY'
import sys, yaml
seen = set()
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "VirtualService":
        for r in d["spec"]["http"]:
            w = {x["destination"].get("subset"): x.get("weight") for x in r["route"]
                 if x["destination"]["host"] == sys.argv[2]}
            if w:
                seen.add(f'{w.get("stable")}/{w.get("canary")}')
print(" ".join(sorted(seen)))
PY
}

# Field of the single document of KIND in FILE, by a Python expression on `d`.
field() { # file kind expression
    python3 - "$@" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == sys.argv[2]]
assert len(docs) == 1, f"{len(docs)} {sys.argv[2]} in {sys.argv[1]}"
d = docs[0]
print(eval(sys.argv[3]))
PY
}

# Line number of the first log line matching a regex (0 when absent).
line_of() { # log regex
    local n
    n=$(grep -n -E -- "$2" "$1" | head -n1 | cut -d: -f1)
    echo "${n:-0}"
}
# The regexes appear in this order in the log.
in_order() { # log regex...
    local log=$1 prev=0 n
    shift
    for re in "$@"; do
        n=$(line_of "$log" "$re")
        if [ "$n" -le "$prev" ]; then
            echo "    expected in order, missing or early: $re" >&2
            return 1
        fi
        prev=$n
    done
}

dry() { # outdir args... : a dry-run; output in $tmp/out.txt
    local out=$1
    shift
    "$deploy" --dry-run --output "$out" "$@" >"$tmp/out.txt" 2>&1
}

# A fake cluster: PATH with fake kubectl (and skopeo), a fresh log.
fake() { # name: sets FAKE_LOG and FAKE_DIR
    export FAKE_DIR="$tmp/fake-$1"
    export FAKE_LOG="$FAKE_DIR/calls.log"
    rm -rf "$FAKE_DIR"
    mkdir -p "$FAKE_DIR"
    : >"$FAKE_LOG"
}
cluster() { # args... : deploy.sh against the fake kubectl; output in $tmp/out.txt
    env PATH="$here/fake-bin:$PATH" DEPLOY_POLL_INTERVAL=0.2 DEPLOY_IMAGE_CHECK="${DEPLOY_IMAGE_CHECK:-none}" \
        "$deploy" "$@" >"$tmp/out.txt" 2>&1
}
applied() { # regex-of-log-line: the file applied by that call
    local n
    n=$(grep -n -E -- "$1" "$FAKE_LOG" | head -n1 | cut -d: -f1)
    [ -n "$n" ] || return 1
    echo "$FAKE_DIR/$(sed -n "$((n + 1))p" "$FAKE_LOG" | sed 's/^  file: //')"
}
show_output() { sed 's/^/    | /' "$tmp/out.txt" | tail -n 15; }

started=$(date +%s)

# ==============================================================================================
# Dry runs: what a release renders, validated (kubernetes-validate, policy, Istio schemas).

case_ "canary --traffic-split=10 renders stable/canary weights 90/10 on every route"
o="$tmp/canary"
if dry "$o" --strategy=canary --traffic-split=10 --service=product-service --image-tag=0.2.0; then
    w=$(weights "$o/canary/product-service-istio.yaml" product-service)
    expect "weights are '$w', not 90/10" [ "$w" = "90/10" ] &&
        expect "canary Deployment not labelled version=canary" \
            [ "$(field "$o/canary/product-service-canary.yaml" Deployment 'd["spec"]["template"]["metadata"]["labels"]["version"]+" "+d["spec"]["selector"]["matchLabels"]["version"]+" "+d["metadata"]["name"]')" = "canary canary product-service-canary" ] &&
        expect "canary image is not the new tag" \
            grep -q 'image: registry.example.com/microservices-platform/product-service:0.2.0' "$o/canary/product-service-canary.yaml" &&
        expect "plan: migration, canary rollout, then the weights" in_order "$o/plan.txt" \
            'wait --for=condition=complete job/product-service-migrate' \
            'apply .*product-service-canary.yaml' 'rollout status deployment/product-service-canary' \
            'apply .*product-service-istio.yaml' &&
        expect "validation did not run" grep -q 'validate-istio: .* valid' "$tmp/out.txt" &&
        ok
else
    show_output
    bad "dry-run failed"
fi

case_ "canary --abort renders 100/0 and removes the canary"
o="$tmp/abort"
if dry "$o" --strategy=canary --abort --service=product-service; then
    w=$(weights "$o/canary/product-service-istio.yaml" product-service)
    expect "weights are '$w', not 100/0" [ "$w" = "100/0" ] &&
        expect "plan: weights first, then delete the canary" in_order "$o/plan.txt" \
            'apply .*product-service-istio.yaml' 'delete deployment product-service-canary' &&
        expect "abort must not roll anything" bash -c "! grep -q 'rollout status' '$o/plan.txt'" &&
        ok
else
    show_output
    bad "dry-run failed"
fi

case_ "canary --promote renders 100/0 with the stable Deployment on the canary's tag"
o="$tmp/promote"
if dry "$o" --strategy=canary --promote --service=payment-service --image-tag=0.2.0; then
    w=$(weights "$o/canary/payment-service-istio.yaml" payment-service)
    expect "weights are '$w', not 100/0" [ "$w" = "100/0" ] &&
        expect "stable Deployment name/image wrong" \
            [ "$(field "$o/canary/payment-service-stable.yaml" Deployment 'd["metadata"]["name"]+" "+d["spec"]["template"]["spec"]["containers"][0]["image"]')" = \
                "payment-service registry.example.com/microservices-platform/payment-service:0.2.0" ] &&
        expect "plan: stable rollout, weights 100/0, then delete the canary" in_order "$o/plan.txt" \
            'apply .*payment-service-stable.yaml' 'rollout status deployment/payment-service ' \
            'apply .*payment-service-istio.yaml' 'delete deployment payment-service-canary' &&
        ok
else
    show_output
    bad "dry-run failed"
fi

case_ "blue-green switches the Service selector to the idle colour, after readiness and the smoke check"
o="$tmp/bg"
if dry "$o" --strategy=blue-green --service=order-service; then
    expect "switched selector is not green" \
        [ "$(field "$o/blue-green/order-service-service.yaml" Service 'd["spec"]["selector"].get("color")')" = green ] &&
        expect "idle Deployment not coloured green" \
            [ "$(field "$o/blue-green/order-service-green.yaml" Deployment 'd["metadata"]["name"]+" "+d["spec"]["selector"]["matchLabels"]["color"]+" "+d["spec"]["template"]["metadata"]["labels"]["color"]')" = "order-service-green green green" ] &&
        expect "the live configuration must stay pinned to blue until the switch" \
            [ "$(field "$o/k8s/order-service/config.yaml" Service 'd["spec"]["selector"].get("color")')" = blue ] &&
        expect "plan order" in_order "$o/plan.txt" \
            'apply .*order-service-green.yaml' 'rollout status deployment/order-service-green' \
            'exec .*deployment/order-service-green .*platform probe http://127.0.0.1:8083/ready' \
            'patch service order-service .*"color":"green"' \
            'patch horizontalpodautoscaler order-service .*order-service-green' &&
        expect "the old colour must be kept" bash -c "! grep -q 'delete deployment order-service-blue' '$o/plan.txt'" &&
        ok
else
    show_output
    bad "dry-run failed"
fi

case_ "blue-green with green live deploys blue; rollback switches back"
o="$tmp/bg2"
if dry "$o" --strategy=blue-green --service=user-service --active-color=green &&
    expect "switched selector is not blue" \
        [ "$(field "$o/blue-green/user-service-service.yaml" Service 'd["spec"]["selector"].get("color")')" = blue ] &&
    dry "$o" --strategy=blue-green --rollback --service=user-service --active-color=green; then
    expect "rollback plan" in_order "$o/plan.txt" 'scale deployment user-service-blue' \
        'rollout status deployment/user-service-blue' 'patch service user-service .*"color":"blue"' &&
        ok
else
    show_output
    bad "dry-run failed"
fi

case_ "rolling with DEPLOY_ISTIO, a registry, a tag and another namespace"
o="$tmp/rolling"
if DEPLOY_ISTIO=true DOCKER_REGISTRY=registry.test:5000/shop dry "$o" --namespace=shop-staging --overlay=staging --image-tag=1.2.3; then
    expect "image not \${DOCKER_REGISTRY}/<service>:<tag>" \
        grep -q 'image: registry.test:5000/shop/event-store:1.2.3' "$o/k8s/event-store/deployment.yaml" &&
        expect "namespace not applied" bash -c "! grep -q 'namespace: microservices' '$o/k8s/all.yaml' '$o/istio/istio.yaml'" &&
        expect "principals not rewritten" grep -q 'cluster.local/ns/shop-staging/sa/order-service' "$o/istio/istio.yaml" &&
        expect "plan: istio, migrations, deployments, rollouts" in_order "$o/plan.txt" \
            'apply .*istio/istio.yaml' 'job/user-service-migrate' 'apply .*api-gateway/deployment.yaml' \
            'rollout status deployment/api-gateway' &&
        ok
else
    show_output
    bad "dry-run failed"
fi

case_ "the image tag defaults to the workspace version in Cargo.toml"
o="$tmp/default-tag"
version=$(awk '/^\[workspace.package\]/{w=1} w && /^version/{gsub(/[" ]/,""); sub(/version=/,""); print; exit}' "$root/Cargo.toml")
if dry "$o" --service=api-gateway; then
    expect "tag is not $version" grep -q "api-gateway:$version\$" "$o/k8s/api-gateway/deployment.yaml" && ok
else
    show_output
    bad "dry-run failed"
fi

case_ "a dry-run fails when the rendered Istio resources are broken (mesh retries)"
broken="$tmp/istio-broken"
cp -R "$root/istio" "$broken"
sed -i '0,/^ *attempts: 0/s//        attempts: 2/' "$broken/virtual-services.yaml"
if DEPLOY_ISTIO_DIR="$broken" dry "$tmp/broken" --strategy=canary --service=api-gateway; then
    bad "dry-run passed with retries.attempts: 2"
else
    expect "no clear message" grep -q 'retries.attempts must be 0' "$tmp/out.txt" &&
        expect "no failure summary" grep -q 'failed validation' "$tmp/out.txt" && ok
fi

case_ "a dry-run fails when a rendered Kubernetes manifest breaks the policy (runAsNonRoot: false)"
broken="$tmp/k8s-broken"
cp -R "$root/k8s" "$broken"
sed -i 's/^\( *\)runAsNonRoot: true/\1runAsNonRoot: false/' "$broken/base/order-service/deployment.yaml"
if DEPLOY_K8S_DIR="$broken" dry "$tmp/broken2" --service=order-service; then
    bad "dry-run passed with runAsNonRoot: false"
else
    expect "no failure summary" grep -q 'failed validation' "$tmp/out.txt" && ok
fi

# ==============================================================================================
# Refusals: bad usage exits 2 with a message naming the problem.

refuse() { # expected-message args...
    local message=$1
    shift
    case_ "refused: $*"
    local rc=0
    "$deploy" "$@" >"$tmp/out.txt" 2>&1 || rc=$?
    if [ "$rc" = 2 ] && grep -qF -- "$message" "$tmp/out.txt"; then ok; else
        show_output
        bad "exit $rc, expected 2 and '$message'"
    fi
}
refuse "unknown option: --colour=blue" --dry-run --colour=blue
refuse "--traffic-split must be a whole percentage from 0 to 100, not '150'" --dry-run --strategy=canary --traffic-split=150
refuse "--traffic-split must be a whole percentage from 0 to 100, not 'ten'" --dry-run --strategy=canary --traffic-split ten
refuse "--traffic-split is for --strategy=canary" --dry-run --traffic-split=10
refuse "unknown --strategy 'recreate'" --dry-run --strategy=recreate
refuse "--promote is for --strategy=canary" --dry-run --promote
refuse "--abort cannot be combined with --promote" --dry-run --strategy=canary --promote --abort
refuse "unknown service 'cart-service'" --dry-run --service=cart-service
refuse "--image-tag latest is refused" --dry-run --image-tag=latest
refuse "--overlay must be staging or production" --dry-run --overlay=dev
mkdir -p "$tmp/precious" && echo keep >"$tmp/precious/file"
refuse "refusing to empty --output $tmp/precious" --dry-run --output="$tmp/precious"
case_ "the refused --output directory is untouched"
if [ -f "$tmp/precious/file" ]; then ok; else bad "it was emptied"; fi

# ==============================================================================================
# The cluster side, against real kubectl without a cluster, then the fake kubectl.

case_ "no cluster: kubectl with a bogus KUBECONFIG fails with deploy's own message (exit 3)"
cat >"$tmp/kubeconfig" <<'EOF'
apiVersion: v1
kind: Config
clusters:
  - name: nowhere
    cluster:
      server: https://127.0.0.1:1
contexts:
  - name: nowhere
    context:
      cluster: nowhere
      user: nobody
current-context: nowhere
users:
  - name: nobody
    user:
      token: not-a-token
EOF
rc=0
KUBECONFIG="$tmp/kubeconfig" "$deploy" --service=api-gateway >"$tmp/out.txt" 2>&1 || rc=$?
if [ "$rc" = 3 ] && grep -q 'kubectl cannot reach a Kubernetes cluster (context: nowhere' "$tmp/out.txt" &&
    grep -q 'use --dry-run' "$tmp/out.txt"; then ok; else
    show_output
    bad "exit $rc"
fi

case_ "fake cluster, rolling: config, migrations (waited), then Deployments and rollout status"
fake rolling
if cluster --service=user-service,product-service; then
    expect "order of calls" in_order "$FAKE_LOG" '^kubectl cluster-info' 'apply -n microservices -f .*/shared.yaml' \
        'get service user-service' 'apply .*user-service/config.yaml' \
        'delete job user-service-migrate' 'apply .*user-service/migrate.yaml' 'get job user-service-migrate' \
        'delete job product-service-migrate' 'get job product-service-migrate' \
        'apply .*user-service/deployment.yaml' 'apply .*product-service/deployment.yaml' \
        'rollout status deployment/user-service ' 'rollout status deployment/product-service ' &&
        expect "the applied Deployment is the rendered one" \
            grep -q 'image: registry.example.com/microservices-platform/user-service:' "$(applied 'apply .*user-service/deployment.yaml')" &&
        ok
else
    show_output
    bad "deploy failed"
fi

case_ "fake cluster, rolling --rollback: rollout undo, then rollout status"
fake undo
if cluster --rollback --service=event-store; then
    expect "order" in_order "$FAKE_LOG" 'rollout undo deployment/event-store' 'rollout status deployment/event-store' &&
        expect "no apply on rollback" bash -c "! grep -q ' apply ' '$FAKE_LOG'" && ok
else
    show_output
    bad "rollback failed"
fi

case_ "fake cluster, rolling refuses a service that is deployed blue-green"
fake rolling-bg
rc=0
FAKE_COLOR=blue cluster --service=order-service || rc=$?
if [ "$rc" = 1 ] && grep -q 'order-service is deployed blue-green' "$tmp/out.txt" &&
    ! grep -q 'deployment.yaml' "$FAKE_LOG"; then ok; else
    show_output
    bad "exit $rc"
fi

case_ "fake cluster, blue-green (blue live): green applied, ready, smoke-checked, then the selector switched"
fake bg
if FAKE_COLOR=blue cluster --strategy=blue-green --service=order-service; then
    expect "order of calls" in_order "$FAKE_LOG" 'apply .*order-service/config.yaml' 'get job order-service-migrate' \
        'apply .*order-service-green.yaml' 'rollout status deployment/order-service-green' \
        'exec -n microservices deployment/order-service-green -c order-service -- /usr/local/bin/platform probe http://127.0.0.1:8083/ready' \
        'patch service order-service -n microservices --type=merge -p \{"spec":\{"selector":\{"color":"green"\}\}\}' &&
        expect "config applied with the selector still on blue" \
            [ "$(field "$(applied 'apply .*order-service/config.yaml')" Service 'd["spec"]["selector"]["color"]')" = blue ] &&
        expect "green gets the live replica count (3)" \
            [ "$(field "$(applied 'apply .*order-service-green.yaml')" Deployment 'd["spec"]["replicas"]')" = 3 ] &&
        expect "blue must be kept" bash -c "! grep -q 'delete deployment' '$FAKE_LOG'" && ok
else
    show_output
    bad "deploy failed"
fi

case_ "fake cluster, blue-green: a failed smoke check leaves the selector alone (exit 1)"
fake bg-smoke
rc=0
FAKE_COLOR=green FAKE_EXEC=fail cluster --strategy=blue-green --service=event-store || rc=$?
if [ "$rc" = 1 ] && grep -q 'smoke check of event-store-blue failed: traffic stays on green' "$tmp/out.txt" &&
    ! grep -q 'patch service' "$FAKE_LOG"; then ok; else
    show_output
    bad "exit $rc"
fi

case_ "fake cluster, blue-green first release: the current version moves to blue before green gets the new one"
fake bg-first
if FAKE_IMAGE=registry.example.com/microservices-platform/event-store:0.0.9 cluster --strategy=blue-green --service=event-store; then
    expect "order" in_order "$FAKE_LOG" 'apply .*event-store-blue.yaml' 'rollout status deployment/event-store-blue' \
        'patch service event-store .*"color":"blue"' 'scale deployment event-store -n microservices --replicas=0' \
        'apply .*event-store-green.yaml' 'rollout status deployment/event-store-green' 'exec .*event-store-green' \
        'patch service event-store .*"color":"green"' &&
        expect "blue runs the current image" grep -q 'event-store:0.0.9' "$(applied 'apply .*event-store-blue.yaml')" && ok
else
    show_output
    bad "deploy failed"
fi

case_ "fake cluster, blue-green --rollback (green live): blue scaled, ready, selector back to blue"
fake bg-rollback
if FAKE_COLOR=green cluster --strategy=blue-green --rollback --service=order-service; then
    expect "order" in_order "$FAKE_LOG" 'get deployment order-service-blue' 'scale deployment order-service-blue .*--replicas=3' \
        'rollout status deployment/order-service-blue' 'patch service order-service .*"color":"blue"' \
        'patch horizontalpodautoscaler order-service .*order-service-blue' && ok
else
    show_output
    bad "rollback failed"
fi

case_ "fake cluster, canary 25%: canary ready before the weights 75/25 are applied"
fake canary
if cluster --strategy=canary --traffic-split=25 --service=product-service --image-tag=0.3.0; then
    expect "order" in_order "$FAKE_LOG" 'apply .*product-service-canary.yaml' \
        'rollout status deployment/product-service-canary' 'apply .*product-service-istio.yaml' &&
        expect "weights 75/25" [ "$(weights "$(applied 'apply .*product-service-istio.yaml')" product-service)" = 75/25 ] && ok
else
    show_output
    bad "deploy failed"
fi

case_ "fake cluster, canary --promote: the stable Deployment takes the canary's image, then 100/0, then the canary goes"
fake promote
if FAKE_IMAGE=registry.example.com/microservices-platform/product-service:0.3.0 cluster --strategy=canary --promote --service=product-service; then
    expect "order" in_order "$FAKE_LOG" 'get deployment product-service-canary' 'apply .*product-service-stable.yaml' \
        'rollout status deployment/product-service ' 'apply .*product-service-istio.yaml' \
        'delete deployment product-service-canary' &&
        expect "stable runs the canary image" grep -q 'image: registry.example.com/microservices-platform/product-service:0.3.0' \
            "$(applied 'apply .*product-service-stable.yaml')" &&
        expect "weights 100/0" [ "$(weights "$(applied 'apply .*product-service-istio.yaml')" product-service)" = 100/0 ] && ok
else
    show_output
    bad "promote failed"
fi

case_ "fake cluster: a readiness wait that times out fails with exit 5"
fake timeout
rc=0
FAKE_ROLLOUT=fail cluster --service=notification-service --timeout=2m || rc=$?
if [ "$rc" = 5 ] && grep -q 'deployment/notification-service was not ready within 120s' "$tmp/out.txt"; then ok; else
    show_output
    bad "exit $rc"
fi

case_ "fake cluster: a missing image seen as ErrImagePull during the wait fails with exit 4"
fake pull
rc=0
FAKE_ROLLOUT=slow FAKE_PODS="api-gateway-7c9 registry.example.com/microservices-platform/api-gateway:9.9.9=ErrImagePull" \
    cluster --service=api-gateway --image-tag=9.9.9 || rc=$?
if [ "$rc" = 4 ] && grep -q 'deployment/api-gateway: an image cannot be pulled' "$tmp/out.txt" &&
    grep -q 'api-gateway:9.9.9=ErrImagePull' "$tmp/out.txt"; then ok; else
    show_output
    bad "exit $rc"
fi

case_ "fake registry: a missing image found by skopeo before anything is applied (exit 4)"
fake skopeo
rc=0
DEPLOY_IMAGE_CHECK=skopeo FAKE_MISSING_TAG=9.9.8 cluster --service=user-service --image-tag=9.9.8 || rc=$?
if [ "$rc" = 4 ] && grep -q 'image registry.example.com/microservices-platform/user-service:9.9.8 is not in the registry' "$tmp/out.txt" &&
    ! grep -q ' apply ' "$FAKE_LOG"; then ok; else
    show_output
    bad "exit $rc"
fi

case_ "fake cluster: a failed migration stops the release before any Deployment (exit 1)"
fake migrate
rc=0
FAKE_JOB=Failed cluster --service=payment-service || rc=$?
if [ "$rc" = 1 ] && grep -q 'migration job/payment-service-migrate failed' "$tmp/out.txt" &&
    grep -q 'relation already exists' "$tmp/out.txt" && ! grep -q 'deployment.yaml' "$FAKE_LOG"; then ok; else
    show_output
    bad "exit $rc"
fi

# ==============================================================================================
# The Istio validator alone: istio/ passes; each kind of breakage fails.

case_ "validate-istio: istio/ passes"
if "$root/scripts/validate-istio.sh" >"$tmp/out.txt" 2>&1; then ok; else
    show_output
    bad "istio/ does not validate"
fi

kubectl kustomize "$root/istio" >"$tmp/istio.yaml"
broken_istio() { # description python-statement expected-message
    case_ "validate-istio rejects: $1"
    python3 - "$tmp/istio.yaml" "$tmp/istio-broken.yaml" "$2" <<'PY'
import sys, yaml
docs = list(yaml.safe_load_all(open(sys.argv[1])))
def one(kind, name):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)
exec(sys.argv[3])
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
PY
    if "$root/scripts/validate-istio.sh" "$tmp/istio-broken.yaml" >"$tmp/out.txt" 2>&1; then
        bad "accepted"
    elif grep -qF -- "$3" "$tmp/out.txt"; then ok; else
        show_output
        bad "rejected without '$3'"
    fi
}
broken_istio "weights summing to 110" \
    'one("VirtualService","order-service")["spec"]["http"][0]["route"][1]["weight"] = 10' "sum to 110, not 100"
broken_istio "a subset missing from the DestinationRule" \
    'one("VirtualService","payment-service")["spec"]["http"][0]["route"][1]["destination"]["subset"] = "beta"' \
    "subset beta is not defined in the DestinationRule of payment-service"
broken_istio "mesh retries" \
    'one("VirtualService","user-service")["spec"]["http"][1]["retries"] = {"attempts": 2, "perTryTimeout": "2s"}' \
    "retries.attempts must be 0"
broken_istio "a gRPC timeout shorter than ORDER_CALL_TIMEOUT" \
    'one("VirtualService","product-service")["spec"]["http"][0]["timeout"] = "3s"' \
    "timeout 3s is shorter than the caller's grpc deadline (5s)"
broken_istio "an ingress timeout shorter than the gateway's REQUEST_TIMEOUT" \
    'one("VirtualService","api-gateway-ingress")["spec"]["http"][1]["timeout"] = "30s"' \
    "shorter than the caller's gateway deadline (35s)"
broken_istio "a misspelt field" \
    'one("DestinationRule","event-store")["spec"]["trafficPolicy"]["outlierDetection"]["consecutive5xxError"] = 5' \
    "unknown field spec.trafficPolicy.outlierDetection.consecutive5xxError"
broken_istio "a wrong type (schema)" \
    'one("DestinationRule","event-store")["spec"]["trafficPolicy"]["connectionPool"]["tcp"]["maxConnections"] = "many"' \
    "must be integer"
broken_istio "PERMISSIVE mesh-wide" \
    'one("PeerAuthentication","default")["spec"]["mtls"]["mode"] = "PERMISSIVE"' \
    "namespace-wide PeerAuthentication must be STRICT"
broken_istio "an unknown enum value (schema)" \
    'one("PeerAuthentication","default")["spec"]["mtls"]["mode"] = "STRICTEST"' \
    "must be equal to one of the allowed values"
broken_istio "a bad principal" \
    'one("AuthorizationPolicy","product-service")["spec"]["rules"][1]["from"][0]["source"]["principals"] = ["order-service"]' \
    "principal order-service is not cluster.local/ns/<namespace>/sa/<service account>"

case_ "validate-istio rejects a file in istio/ left out of the kustomization"
cp -R "$root/istio" "$tmp/istio-extra"
# The default mode checks the repository's istio/; run that check on a copy through a copy of
# the script's tree layout.
mkdir -p "$tmp/tree/scripts/lib" "$tmp/tree/tools"
cp "$root/scripts/validate-istio.sh" "$tmp/tree/scripts/"
cp "$root/scripts/lib/npm-tool.sh" "$tmp/tree/scripts/lib/"
cp -R "$root/tools/istio-validate" "$tmp/tree/tools/"
rm -rf "$tmp/tree/tools/istio-validate/node_modules"
cp -R "$tmp/istio-extra" "$tmp/tree/istio"
cp "$root/istio/telemetry.yaml" "$tmp/tree/istio/extra.yaml"
if "$tmp/tree/scripts/validate-istio.sh" >"$tmp/out.txt" 2>&1; then bad "accepted"; elif
    grep -q 'istio/extra.yaml is not listed' "$tmp/out.txt"; then ok; else
    show_output
    bad "wrong message"
fi

case_ "shellcheck of the deploy scripts and the fakes"
if command -v shellcheck >/dev/null; then
    # -x from the repository root: validate-istio.sh sources scripts/lib/npm-tool.sh.
    if (cd "$root" && shellcheck -x "$deploy" scripts/validate-istio.sh "$here/run.sh" "$here"/fake-bin/*) >"$tmp/out.txt" 2>&1; then ok; else
        show_output
        bad "shellcheck"
    fi
else
    bad "shellcheck is not installed"
fi

echo
echo "deploy tests: $(($(date +%s) - started))s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
