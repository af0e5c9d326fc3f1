#!/usr/bin/env bash
# Deploys the platform to Kubernetes from k8s/overlays/<overlay> (and istio/), rolling, blue-green
# or canary; or, with --dry-run, renders every manifest a release would apply into a directory
# and validates it, with no cluster at all.
#
#   scripts/deploy.sh [--strategy=rolling]                     # every service, rolling update
#   scripts/deploy.sh --strategy=blue-green --service=order-service
#   scripts/deploy.sh --strategy=canary --traffic-split=10 --service=product-service --image-tag=0.2.0
#   scripts/deploy.sh --strategy=canary --promote --service=product-service
#   scripts/deploy.sh --strategy=canary --abort   --service=product-service
#   scripts/deploy.sh --rollback [--strategy=blue-green]
#   DEPLOY_ISTIO=true scripts/deploy.sh --dry-run --output deploy-out
#
# Options (`--name=value` or `--name value`):
#   --strategy=rolling|blue-green|canary   default rolling
#   --traffic-split=N        canary: N% of the traffic to the canary (0-100, default 10)
#   --promote | --abort      canary: make the canary the new stable / remove it (weights 100/0);
#                            promote uses the canary's live image (--dry-run: --image-tag)
#   --rollback               rolling: `kubectl rollout undo`; blue-green: back to the previous colour
#   --dry-run                render into --output and validate; no cluster is contacted
#   --output DIR             where --dry-run renders (default ./deploy-out; emptied first)
#   --namespace NS           default microservices
#   --image-tag TAG          default: the workspace version in Cargo.toml
#   --overlay staging|production   default production
#   --service NAME           repeatable or comma-separated; default every service
#   --timeout DURATION       each wait (migration Job, rollout): 300s default (s, m or h)
#   --active-color blue|green      dry-run only: the colour assumed live (default blue)
#   --canary-replicas N      pods of a canary Deployment (default 1)
#
# Environment:
#   DOCKER_REGISTRY       images are ${DOCKER_REGISTRY}/<service>:<tag>; unset keeps the overlay's
#                         image names and only sets the tag
#   DEPLOY_ISTIO=true     also apply istio/ (canary always applies its service's routes)
#   DEPLOY_IMAGE_CHECK    auto (default: skopeo, else docker, else none) | skopeo | docker | none.
#                         With none, a missing image is caught during the rollout wait, from the
#                         pods' ErrImagePull / ImagePullBackOff status.
#   SMOKE_COMMAND         blue-green smoke check, run as `$SMOKE_COMMAND <service> <deployment>
#                         <namespace>`; default: `kubectl exec deployment/<service>-<colour> --
#                         /usr/local/bin/platform probe http://127.0.0.1:<port>/ready`
#   KUBECTL               kubectl binary (default kubectl)
#   DEPLOY_K8S_DIR, DEPLOY_ISTIO_DIR   other copies of k8s/ and istio/ (tests use broken ones)
#
# Exit status: 0 done; 1 a step failed (a migration, the smoke check, validation); 2 bad usage;
# 3 no cluster; 4 an image is missing; 5 a readiness wait timed out.
#
# Order of a release: shared and per-service configuration (ConfigMaps, Services, policies),
# Istio resources when asked, the migration Jobs (<service>-migrate, waited for), then the
# Deployments and their readiness. Migrations therefore run while the previous version still
# serves: they must stay compatible with it (expand, then contract in a later release).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lib="$root/scripts/lib/deploy"
k8s_dir="${DEPLOY_K8S_DIR:-$root/k8s}"
istio_dir="${DEPLOY_ISTIO_DIR:-$root/istio}"
KUBECTL="${KUBECTL:-kubectl}"
poll="${DEPLOY_POLL_INTERVAL:-5}"
K8S_SCHEMA_VERSION=1.32.0 # as scripts/validate-k8s.sh

ALL_SERVICES=(api-gateway user-service product-service order-service payment-service notification-service event-store)
declare -A HTTP_PORT=(
    [api-gateway]=8080 [user-service]=8081 [product-service]=8082 [order-service]=8083
    [payment-service]=8084 [notification-service]=8085 [event-store]=8086
)

log() { echo "deploy: $*" >&2; }
die() { local code=$1; shift; echo "deploy: error: $*" >&2; exit "$code"; }
usage_error() { echo "deploy: $*" >&2; echo "deploy: see scripts/deploy.sh --help" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

# --------------------------------------------------------------------------------------------
# Options

strategy=rolling
traffic_split=""
action=deploy # deploy | promote | abort | rollback
dry_run=false
output=""
namespace=microservices
image_tag=""
overlay=production
services=()
timeout=300s
active_color_opt=""
canary_replicas=1

set_action() {
    [ "$action" = deploy ] || usage_error "--$1 cannot be combined with --$action"
    action=$1
}

while [ "$#" -gt 0 ]; do
    arg=$1
    shift
    name=${arg%%=*}
    if [[ "$arg" == *=* ]]; then
        value=${arg#*=}
        has_value=true
    else
        value=""
        has_value=false
    fi
    case $name in
    --strategy | --traffic-split | --output | --namespace | --image-tag | --overlay | --service | \
        --timeout | --active-color | --canary-replicas)
        if [ "$has_value" = false ]; then
            [ "$#" -gt 0 ] || usage_error "$name needs a value"
            value=$1
            shift
        fi
        ;;
    --promote | --abort | --rollback | --dry-run | -h | --help)
        [ "$has_value" = false ] || usage_error "$name takes no value"
        ;;
    *) usage_error "unknown option: $arg" ;;
    esac
    case $name in
    --strategy) strategy=$value ;;
    --traffic-split) traffic_split=$value ;;
    --promote) set_action promote ;;
    --abort) set_action abort ;;
    --rollback) set_action rollback ;;
    --dry-run) dry_run=true ;;
    --output) output=$value ;;
    --namespace) namespace=$value ;;
    --image-tag) image_tag=$value ;;
    --overlay) overlay=$value ;;
    --service) IFS=, read -r -a more <<<"$value" && services+=("${more[@]}") ;;
    --timeout) timeout=$value ;;
    --active-color) active_color_opt=$value ;;
    --canary-replicas) canary_replicas=$value ;;
    -h | --help) usage && exit 0 ;;
    esac
done

case $strategy in rolling | blue-green | canary) ;; *)
    usage_error "unknown --strategy '$strategy' (rolling, blue-green or canary)" ;;
esac
if [ -n "$traffic_split" ]; then
    [ "$strategy" = canary ] || usage_error "--traffic-split is for --strategy=canary"
    if ! [[ "$traffic_split" =~ ^[0-9]{1,3}$ ]] || [ "$traffic_split" -gt 100 ]; then
        usage_error "--traffic-split must be a whole percentage from 0 to 100, not '$traffic_split'"
    fi
fi
traffic_split=${traffic_split:-10}
case $action in
promote | abort) [ "$strategy" = canary ] || usage_error "--$action is for --strategy=canary" ;;
rollback) [ "$strategy" != canary ] || usage_error "a canary is rolled back with --abort" ;;
esac
case $overlay in staging | production) ;; *) usage_error "--overlay must be staging or production, not '$overlay'" ;; esac
[[ "$namespace" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || usage_error "--namespace '$namespace' is not a valid namespace name"
[[ "$timeout" =~ ^[0-9]+[smh]?$ ]] || usage_error "--timeout must look like 300s, 10m or 1h, not '$timeout'"
[[ "$canary_replicas" =~ ^[1-9][0-9]*$ ]] || usage_error "--canary-replicas must be a positive number"
case $active_color_opt in
"" | blue | green) ;;
*) usage_error "--active-color must be blue or green" ;;
esac
if [ -n "$active_color_opt" ] && [ "$dry_run" = false ]; then
    usage_error "--active-color is for --dry-run (a real deployment reads the live colour)"
fi
if [ -n "$output" ] && [ "$dry_run" = false ]; then
    usage_error "--output is for --dry-run"
fi
if [ "${#services[@]}" -eq 0 ]; then
    services=("${ALL_SERVICES[@]}")
else
    for s in "${services[@]}"; do
        [ -n "${HTTP_PORT[$s]:-}" ] || usage_error "unknown service '$s' (one of: ${ALL_SERVICES[*]})"
    done
fi
case $timeout in
*h) timeout_s=$((${timeout%h} * 3600)) ;;
*m) timeout_s=$((${timeout%m} * 60)) ;;
*s) timeout_s=${timeout%s} ;;
*) timeout_s=$timeout ;;
esac
timeout="${timeout_s}s"

explicit_tag=$image_tag
if [ -z "$image_tag" ]; then
    image_tag=$(awk '/^\[/{in_ws=($0=="[workspace.package]")} in_ws && /^version *=/{gsub(/[" ]/,"",$0); sub(/^version=/,"",$0); print; exit}' "$root/Cargo.toml")
    [ -n "$image_tag" ] || die 1 "no --image-tag and no version under [workspace.package] in Cargo.toml"
fi
[[ "$image_tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || usage_error "--image-tag '$image_tag' is not a valid image tag"
[ "$image_tag" != latest ] || usage_error "--image-tag latest is refused: deploy a pinned version"

deploy_istio=false
case "${DEPLOY_ISTIO:-false}" in true | 1 | yes) deploy_istio=true ;; esac

# --------------------------------------------------------------------------------------------
# Tools and the cluster

if ! python3 -c 'import yaml' 2>/dev/null; then
    die 1 "python3 with PyYAML is needed to render the manifests (Debian: python3-yaml)"
fi
command -v "$KUBECTL" >/dev/null || die 1 "kubectl ($KUBECTL) is not installed"
manifests() { python3 "$lib/manifests.py" "$@"; }

if [ "$dry_run" = true ]; then
    out=${output:-./deploy-out}
    # Emptied first, so it holds this run only; never a directory this script did not make.
    if [ -d "$out" ] && [ -n "$(ls -A "$out")" ] && [ ! -f "$out/plan.txt" ]; then
        usage_error "refusing to empty --output $out: it is not empty and holds no earlier plan.txt"
    fi
    rm -rf "$out"
    mkdir -p "$out"
    out=$(cd "$out" && pwd)
else
    out=$(mktemp -d "${TMPDIR:-/tmp}/deploy.XXXXXX")
    trap 'rm -rf "$out"' EXIT
    context=$("$KUBECTL" config current-context 2>/dev/null || echo "none")
    if ! err=$("$KUBECTL" cluster-info --request-timeout=10s 2>&1 >/dev/null); then
        die 3 "kubectl cannot reach a Kubernetes cluster (context: $context; KUBECONFIG=${KUBECONFIG:-~/.kube/config}): $(echo "$err" | grep -v '^$' | tail -n1). Point KUBECONFIG at a cluster, or use --dry-run to render and validate without one."
    fi
fi
plan="$out/plan.txt"
: >"$plan"
note() { echo "# $*" >>"$plan"; log "$*"; }

# A call that changes the cluster: recorded in plan.txt; with --dry-run only recorded.
kube() {
    echo "kubectl $*" >>"$plan"
    [ "$dry_run" = true ] && return 0
    "$KUBECTL" "$@"
}
# A read-only query (never made by --dry-run).
kube_get() { "$KUBECTL" "$@"; }

# --------------------------------------------------------------------------------------------
# Render: a temporary copy of k8s/ whose overlay gets the namespace and images, then one file per
# service and part.

render_k8s() {
    local src="$out/.src"
    rm -rf "$src"
    mkdir -p "$src"
    cp -R "$k8s_dir" "$src/k8s"
    local kustomization="$src/k8s/overlays/$overlay/kustomization.yaml"
    [ -f "$kustomization" ] || die 1 "k8s/overlays/$overlay/kustomization.yaml not found"
    local istio_flag=()
    [ "$deploy_istio" = true ] && istio_flag=(--istio)
    manifests prepare-overlay "$kustomization" --namespace "$namespace" --tag "$image_tag" \
        --registry "${DOCKER_REGISTRY:-}" "${istio_flag[@]}"
    mkdir -p "$out/k8s"
    "$KUBECTL" kustomize "$src/k8s/overlays/$overlay" >"$out/k8s/all.yaml" ||
        die 1 "kubectl kustomize k8s/overlays/$overlay failed"
    rm -rf "$src"
    local IFS=,
    manifests split "$out/k8s/all.yaml" "$out/k8s" --services "${services[*]}" --all-services "${ALL_SERVICES[*]}"
}

render_istio() {
    mkdir -p "$out/istio"
    "$KUBECTL" kustomize "$istio_dir" | sed -e "s#^namespace: microservices\$#namespace: $namespace#" \
        -e "s#  namespace: microservices\$#  namespace: $namespace#" \
        -e "s#cluster.local/ns/microservices/sa/#cluster.local/ns/$namespace/sa/#g" >"$out/istio/istio.yaml" ||
        die 1 "kubectl kustomize istio/ failed"
}

# --------------------------------------------------------------------------------------------
# Waits. Each prints progress and fails with its own message and status.

duration_since() { echo $(($(date +%s) - $1)); }

# Pods of `selector` that cannot pull their image: "pod image=reason" lines.
pull_errors() {
    kube_get get pods -n "$namespace" -l "$1" -o \
        jsonpath='{range .items[*]}{.metadata.name}{range .status.containerStatuses[*]}{" "}{.image}{"="}{.state.waiting.reason}{end}{"\n"}{end}' 2>/dev/null |
        grep -E '=(ErrImagePull|ImagePullBackOff|InvalidImageName|ErrImageNeverPull)' || true
}

fail_on_pull_errors() { # selector what
    local errors
    errors=$(pull_errors "$1")
    if [ -n "$errors" ]; then
        die 4 "$2: an image cannot be pulled (seen in the pods' status):
$errors
Is the image pushed (make docker-push) and the tag right?"
    fi
}

wait_rollout() { # deployment selector
    local dep=$1 selector=$2
    if [ "$dry_run" = true ]; then
        kube rollout status "deployment/$dep" -n "$namespace" --timeout="$timeout"
        return
    fi
    echo "kubectl rollout status deployment/$dep -n $namespace --timeout=$timeout" >>"$plan"
    log "waiting for deployment/$dep to be ready (up to $timeout)"
    local started pid last=0
    started=$(date +%s)
    "$KUBECTL" rollout status "deployment/$dep" -n "$namespace" --timeout="$timeout" >&2 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        if ! (fail_on_pull_errors "$selector" "deployment/$dep"); then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            exit 4
        fi
        if [ $(($(duration_since "$started") - last)) -ge 30 ]; then
            last=$(duration_since "$started")
            log "deployment/$dep: still waiting after ${last}s"
        fi
        sleep "$poll"
    done
    if ! wait "$pid"; then
        fail_on_pull_errors "$selector" "deployment/$dep"
        die 5 "deployment/$dep was not ready within $timeout (kubectl rollout status failed). Look at: kubectl -n $namespace describe deployment/$dep; kubectl -n $namespace get events --sort-by=.lastTimestamp"
    fi
    log "deployment/$dep is ready ($(duration_since "$started")s)"
}

wait_job() { # job
    local job=$1
    if [ "$dry_run" = true ]; then
        kube wait --for=condition=complete "job/$job" -n "$namespace" --timeout="$timeout"
        return
    fi
    echo "kubectl wait --for=condition=complete job/$job -n $namespace --timeout=$timeout (polled)" >>"$plan"
    log "waiting for the migration job/$job (up to $timeout)"
    local started state last=0
    started=$(date +%s)
    while :; do
        state=$(kube_get get job "$job" -n "$namespace" -o \
            jsonpath='{.status.conditions[?(@.type=="Complete")].status}/{.status.conditions[?(@.type=="Failed")].status}' 2>/dev/null || true)
        case $state in
        True/*)
            log "job/$job completed ($(duration_since "$started")s)"
            return
            ;;
        */True)
            kube_get logs "job/$job" -n "$namespace" --tail=30 >&2 2>/dev/null || true
            die 1 "the migration job/$job failed (its last log lines are above); nothing was rolled out"
            ;;
        esac
        fail_on_pull_errors "job-name=$job" "job/$job"
        if [ "$(duration_since "$started")" -ge "$timeout_s" ]; then
            die 5 "the migration job/$job did not complete within $timeout; nothing was rolled out"
        fi
        if [ $(($(duration_since "$started") - last)) -ge 30 ]; then
            last=$(duration_since "$started")
            log "job/$job: still running after ${last}s"
        fi
        sleep "$poll"
    done
}

# --------------------------------------------------------------------------------------------
# Steps shared by the strategies

check_images() { # image...
    [ "$dry_run" = false ] || return 0
    local method=${DEPLOY_IMAGE_CHECK:-auto}
    if [ "$method" = auto ]; then
        if command -v skopeo >/dev/null; then
            method=skopeo
        elif command -v docker >/dev/null; then
            method=docker
        else
            method=none
        fi
    fi
    if [ "$method" = none ]; then
        log "images not checked in the registry (no skopeo or docker; DEPLOY_IMAGE_CHECK=$method): a missing image shows as ErrImagePull while waiting"
        return 0
    fi
    local image
    for image in "$@"; do
        case $method in
        skopeo) skopeo inspect --raw "docker://$image" >/dev/null 2>&1 ;;
        docker) docker manifest inspect "$image" >/dev/null 2>&1 ;;
        *) die 2 "DEPLOY_IMAGE_CHECK must be auto, skopeo, docker or none, not '$method'" ;;
        esac || die 4 "image $image is not in the registry ($method could not find its manifest). Push it first (make docker-build docker-push DOCKER_REGISTRY=...) or pick an existing --image-tag."
        log "image $image found ($method)"
    done
}

# The colour a service's Service selects now: blue, green or none.
live_color() { # service
    if [ "$dry_run" = true ]; then
        if [ "$strategy" = blue-green ]; then echo "${active_color_opt:-blue}"; else echo "${active_color_opt:-none}"; fi
        return
    fi
    local c
    c=$(kube_get get service "$1" -n "$namespace" -o jsonpath='{.spec.selector.color}' 2>/dev/null || true)
    echo "${c:-none}"
}

apply_config() { # service colour: the service's objects, Service selector and HPA pinned to colour
    local s=$1 c=$2
    manifests pin "$out/k8s/$s/config.yaml" --service "$s" --color "$c"
    kube apply -n "$namespace" -f "$out/k8s/$s/config.yaml"
}

run_migrations() {
    local s job
    for s in "${services[@]}"; do
        [ -s "$out/k8s/$s/migrate.yaml" ] || continue
        job="$s-migrate"
        note "$s: migration job/$job"
        kube delete job "$job" -n "$namespace" --ignore-not-found --wait=true --timeout="$timeout"
        kube apply -n "$namespace" -f "$out/k8s/$s/migrate.yaml"
        wait_job "$job"
    done
}

all_images() {
    local s
    for s in "${services[@]}"; do manifests images "$out/k8s/$s/deployment.yaml"; done | sort -u
}

prepare() { # colour-aware configuration of every selected service, then Istio, then migrations
    local s c
    kube apply -n "$namespace" -f "$out/k8s/shared.yaml"
    for s in "${services[@]}"; do
        c=$(live_color "$s")
        if [ "$strategy" = rolling ] && [ "$c" != none ]; then
            die 1 "$s is deployed blue-green (its Service selects color=$c): use --strategy=blue-green"
        fi
        apply_config "$s" "$c"
    done
    if [ "$deploy_istio" = true ]; then
        note "Istio resources (DEPLOY_ISTIO=true)"
        kube apply -n "$namespace" -f "$out/istio/istio.yaml"
    fi
    run_migrations
}

# --------------------------------------------------------------------------------------------
# Strategies

rolling() {
    local s
    mapfile -t images < <(all_images)
    check_images "${images[@]}"
    prepare
    for s in "${services[@]}"; do
        note "$s: rolling update to $(manifests images "$out/k8s/$s/deployment.yaml" | head -n1)"
        kube apply -n "$namespace" -f "$out/k8s/$s/deployment.yaml"
    done
    for s in "${services[@]}"; do wait_rollout "$s" "app=$s,version=stable"; done
}

rolling_rollback() {
    local s
    for s in "${services[@]}"; do
        note "$s: rollout undo"
        kube rollout undo "deployment/$s" -n "$namespace"
    done
    for s in "${services[@]}"; do wait_rollout "$s" "app=$s,version=stable"; done
}

smoke() { # service deployment
    local s=$1 dep=$2
    if [ -n "${SMOKE_COMMAND:-}" ]; then
        echo "$SMOKE_COMMAND $s $dep $namespace" >>"$plan"
        [ "$dry_run" = true ] && return 0
        # shellcheck disable=SC2086 # SMOKE_COMMAND may carry its own arguments
        $SMOKE_COMMAND "$s" "$dep" "$namespace"
    else
        kube exec -n "$namespace" "deployment/$dep" -c "$s" -- \
            /usr/local/bin/platform probe "http://127.0.0.1:${HTTP_PORT[$s]}/ready"
    fi
}

switch_color() { # service colour
    local s=$1 c=$2
    mkdir -p "$out/blue-green"
    manifests service-selector "$out/k8s/$s/config.yaml" --service "$s" --color "$c" >"$out/blue-green/$s-service.yaml"
    kube patch service "$s" -n "$namespace" --type=merge -p "{\"spec\":{\"selector\":{\"color\":\"$c\"}}}"
    if grep -q '^kind: HorizontalPodAutoscaler' "$out/k8s/$s/config.yaml"; then
        kube patch horizontalpodautoscaler "$s" -n "$namespace" --type=merge \
            -p "{\"spec\":{\"scaleTargetRef\":{\"name\":\"$s-$c\"}}}"
    fi
}

# Deploys <s>-<colour> (image, replicas) and waits for it.
deploy_color() { # service colour replicas [image]
    local s=$1 c=$2 replicas=$3 image=${4:-}
    mkdir -p "$out/blue-green"
    manifests color "$out/k8s/$s/deployment.yaml" --color "$c" --replicas "$replicas" ${image:+--image "$image"} \
        >"$out/blue-green/$s-$c.yaml"
    kube apply -n "$namespace" -f "$out/blue-green/$s-$c.yaml"
    wait_rollout "$s-$c" "app=$s,version=stable,color=$c"
}

replicas_of() { # deployment service: its replicas now (dry-run: the HPA's minimum)
    local r=""
    if [ "$dry_run" = false ]; then
        r=$(kube_get get deployment "$1" -n "$namespace" -o jsonpath='{.spec.replicas}' 2>/dev/null || true)
    fi
    [ -n "$r" ] && [ "$r" != 0 ] || r=$(manifests min-replicas "$out/k8s/$2/config.yaml" --service "$2")
    echo "$r"
}

blue_green() {
    local s active idle current
    mapfile -t images < <(all_images)
    check_images "${images[@]}"
    declare -A actives=()
    for s in "${services[@]}"; do actives[$s]=$(live_color "$s"); done
    kube apply -n "$namespace" -f "$out/k8s/shared.yaml"
    # A service not yet in blue-green mode (its plain Deployment <s> serving) first moves, at its
    # current version, to <s>-blue: new pods of another colour would otherwise join the Service at
    # once, since a selector cannot exclude pods that lack a label.
    for s in "${services[@]}"; do
        [ "${actives[$s]}" = none ] || continue
        current=$(kube_get get deployment "$s" -n "$namespace" -o jsonpath='{.spec.template.spec.containers[0].image}' 2>/dev/null || true)
        [ -n "$current" ] || current=$(manifests images "$out/k8s/$s/deployment.yaml" | head -n1)
        note "$s: first blue-green release: moving the current version ($current) to $s-blue"
        apply_config "$s" none
        deploy_color "$s" blue "$(replicas_of "$s" "$s")" "$current"
        switch_color "$s" blue
        kube scale deployment "$s" -n "$namespace" --replicas=0
        actives[$s]=blue
    done
    for s in "${services[@]}"; do apply_config "$s" "${actives[$s]}"; done
    if [ "$deploy_istio" = true ]; then
        note "Istio resources (DEPLOY_ISTIO=true)"
        kube apply -n "$namespace" -f "$out/istio/istio.yaml"
    fi
    run_migrations
    for s in "${services[@]}"; do
        active=${actives[$s]}
        if [ "$active" = blue ]; then idle=green; else idle=blue; fi
        note "$s: deploying the idle colour $idle (live: $active)"
        deploy_color "$s" "$idle" "$(replicas_of "$s-$active" "$s")"
        note "$s: smoke check of $s-$idle"
        smoke "$s" "$s-$idle" || die 1 "$s: the smoke check of $s-$idle failed: traffic stays on $active; $s-$idle is left running for inspection"
        note "$s: switching the Service selector to color=$idle; $s-$active is kept for --rollback"
        switch_color "$s" "$idle"
    done
}

blue_green_rollback() {
    local s active previous
    for s in "${services[@]}"; do
        active=$(live_color "$s")
        [ "$active" != none ] || die 1 "$s is not deployed blue-green (its Service selects no color): nothing to switch back to"
        if [ "$active" = blue ]; then previous=green; else previous=blue; fi
        if [ "$dry_run" = false ] && ! kube_get get deployment "$s-$previous" -n "$namespace" >/dev/null 2>&1; then
            die 1 "$s: deployment/$s-$previous (the previous colour) no longer exists"
        fi
        note "$s: rollback: back to $previous (from $active)"
        mkdir -p "$out/blue-green"
        kube scale deployment "$s-$previous" -n "$namespace" --replicas="$(replicas_of "$s-$active" "$s")"
        wait_rollout "$s-$previous" "app=$s,version=stable,color=$previous"
        switch_color "$s" "$previous"
    done
}

# The canary's image when promoting: --image-tag if given, else what the canary runs.
canary_image() { # service
    local s=$1 image=""
    if [ -z "$explicit_tag" ] && [ "$dry_run" = false ]; then
        image=$(kube_get get deployment "$s-canary" -n "$namespace" -o jsonpath='{.spec.template.spec.containers[0].image}' 2>/dev/null || true)
        [ -n "$image" ] || die 1 "$s: no deployment/$s-canary to promote (give --image-tag to promote a tag anyway)"
    fi
    [ -n "$image" ] || image=$(manifests images "$out/k8s/$s/deployment.yaml" | head -n1)
    echo "$image"
}

route_weights() { # service canary-percent
    local s=$1 n=$2
    mkdir -p "$out/canary"
    manifests weights "$out/istio/istio.yaml" --service "$s" --canary "$n" >"$out/canary/$s-istio.yaml"
    note "$s: traffic $((100 - n))% stable / $n% canary"
    kube apply -n "$namespace" -f "$out/canary/$s-istio.yaml"
}

canary() {
    local s c
    mkdir -p "$out/canary"
    case $action in
    deploy)
        mapfile -t images < <(all_images)
        check_images "${images[@]}"
        prepare
        for s in "${services[@]}"; do
            c=$(live_color "$s")
            manifests canary "$out/k8s/$s/deployment.yaml" --replicas "$canary_replicas" --color "$c" >"$out/canary/$s-canary.yaml"
            note "$s: canary $s-canary ($(manifests images "$out/canary/$s-canary.yaml" | head -n1))"
            kube apply -n "$namespace" -f "$out/canary/$s-canary.yaml"
            wait_rollout "$s-canary" "app=$s,version=canary"
            route_weights "$s" "$traffic_split"
            log "$s: promote with --strategy=canary --promote --service=$s, or abort with --abort"
        done
        ;;
    promote)
        for s in "${services[@]}"; do
            local image target
            image=$(canary_image "$s")
            check_images "$image"
            c=$(live_color "$s")
            if [ "$c" = none ]; then
                manifests set-image "$out/k8s/$s/deployment.yaml" --image "$image" >"$out/canary/$s-stable.yaml"
                target=$s
            else
                manifests color "$out/k8s/$s/deployment.yaml" --color "$c" --image "$image" \
                    --replicas "$(replicas_of "$s-$c" "$s")" >"$out/canary/$s-stable.yaml"
                target=$s-$c
            fi
            note "$s: promoting $image to the stable $target"
            kube apply -n "$namespace" -f "$out/canary/$s-stable.yaml"
            if [ "$c" = none ]; then
                wait_rollout "$target" "app=$s,version=stable"
            else
                wait_rollout "$target" "app=$s,version=stable,color=$c"
            fi
            route_weights "$s" 0
            kube delete deployment "$s-canary" -n "$namespace" --ignore-not-found
        done
        ;;
    abort)
        for s in "${services[@]}"; do
            route_weights "$s" 0
            note "$s: removing the canary"
            kube delete deployment "$s-canary" -n "$namespace" --ignore-not-found
        done
        ;;
    esac
}

# --------------------------------------------------------------------------------------------
# Validation of what --dry-run rendered

validate_output() {
    local failed=0 f extras=() core=()
    mapfile -t extras < <(find "$out/blue-green" "$out/canary" -name '*.yaml' ! -name '*-istio.yaml' 2>/dev/null | sort)
    local vdir="$out/.validate"
    mkdir -p "$vdir"

    # Schemas: every built-in object against Kubernetes' own (custom resources, the overlay's
    # ExternalSecrets, are unchanged by this script and validated by scripts/validate-k8s.sh).
    command -v kubernetes-validate >/dev/null ||
        die 1 "kubernetes-validate is not installed (python3 -m pip install kubernetes-validate==1.37.0; scripts/validate-k8s.sh installs it)"
    for f in "$out/k8s/all.yaml" "${extras[@]}"; do
        python3 "$root/scripts/k8s-split.py" crds "$f" "$vdir/$(basename "$f").core.yaml" "$vdir/custom.yaml" >/dev/null
        core+=("$vdir/$(basename "$f").core.yaml")
    done
    log "validating the Kubernetes manifests (kubernetes-validate --strict -k $K8S_SCHEMA_VERSION)"
    if ! kubernetes-validate --strict --quiet -k "$K8S_SCHEMA_VERSION" "${core[@]}" >"$vdir/kv.out" 2>&1 ||
        grep -q "Couldn't find schema" "$vdir/kv.out"; then
        cat "$vdir/kv.out" >&2
        failed=1
    fi

    # Policy (scripts/k8s-policy.py): the whole release, then each extra Deployment in the place of
    # its service's stable one.
    if [ -f "$root/scripts/k8s-policy.py" ]; then
        local monitoring=()
        if [ -d "$k8s_dir/monitoring" ] && "$KUBECTL" kustomize "$k8s_dir/monitoring" >"$vdir/monitoring.yaml" 2>/dev/null; then
            monitoring=("$vdir/monitoring.yaml")
        fi
        log "policy check (scripts/k8s-policy.py)"
        python3 "$root/scripts/k8s-policy.py" "$out/k8s/all.yaml" "${monitoring[@]}" >&2 || failed=1
        for f in "${extras[@]}"; do
            grep -q '^kind: Deployment' "$f" || continue
            manifests policy-set "$out/k8s/all.yaml" "$f" >"$vdir/policy-set.yaml"
            python3 "$root/scripts/k8s-policy.py" "$vdir/policy-set.yaml" "${monitoring[@]}" >&2 || {
                log "policy check failed for $f"
                failed=1
            }
        done
    else
        die 1 "scripts/k8s-policy.py not found: the rendered manifests cannot be policy-checked"
    fi

    local istio_files=()
    mapfile -t istio_files < <(find "$out/istio" "$out/canary" -name '*.yaml' \( -name 'istio.yaml' -o -name '*-istio.yaml' \) 2>/dev/null | sort)
    if [ "${#istio_files[@]}" -gt 0 ]; then
        log "validating the Istio resources (scripts/validate-istio.sh)"
        "$root/scripts/validate-istio.sh" "${istio_files[@]}" >&2 || failed=1
    fi
    rm -rf "$vdir"
    [ "$failed" = 0 ] || die 1 "the rendered manifests in $out failed validation"
}

# --------------------------------------------------------------------------------------------

note "release: strategy=$strategy action=$action overlay=$overlay namespace=$namespace tag=$image_tag services=${services[*]} dry-run=$dry_run"
render_k8s
if [ "$deploy_istio" = true ] || [ "$strategy" = canary ]; then render_istio; fi

case $strategy/$action in
rolling/deploy) rolling ;;
rolling/rollback) rolling_rollback ;;
blue-green/deploy) blue_green ;;
blue-green/rollback) blue_green_rollback ;;
canary/*) canary ;;
esac

if [ "$dry_run" = true ]; then
    validate_output
    log "rendered and validated into $out (the kubectl calls a real run makes: $out/plan.txt)"
else
    log "done: $strategy${action:+ $action} of ${services[*]} in namespace $namespace"
fi
