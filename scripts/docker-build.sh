#!/usr/bin/env bash
# Builds every service's image (or the ones named) from one release build of the multi-call
# binary: `cargo build --release -p platform`, then one `build` per Dockerfile target.
#
#   scripts/docker-build.sh [service ...]
#   DOCKER_REGISTRY=registry.example.com VERSION=1.2.3 scripts/docker-build.sh
#
# Tags: $DOCKER_REGISTRY/<service>:$VERSION (defaults: localhost/microservices-platform, the
# workspace version). The base image defaults to localhost/debian:bookworm, built here by
# scripts/build-base-image.sh when missing (no registry needed); set BASE_IMAGE to use another
# Debian bookworm image (the binary is linked against bookworm's glibc).
set -euo pipefail
cd "$(dirname "$0")/.."

all=(api-gateway user-service product-service order-service payment-service notification-service event-store)
# Each service's default HTTP and gRPC ports (README's configuration table).
declare -A http_port=([api-gateway]=8080 [user-service]=8081 [product-service]=8082 [order-service]=8083
    [payment-service]=8084 [notification-service]=8085 [event-store]=8086)
declare -A grpc_port=([user-service]=9081 [product-service]=9082 [order-service]=9083 [payment-service]=9084)
services=("$@")
[ "${#services[@]}" -gt 0 ] || services=("${all[@]}")
for service in "${services[@]}"; do
    [[ " ${all[*]} " == *" $service "* ]] || { echo "docker-build: unknown service $service (one of: ${all[*]})" >&2; exit 2; }
done

engine="${CONTAINER_ENGINE:-$(command -v podman || command -v docker || true)}"
[ -n "$engine" ] || { echo "docker-build: no podman or docker found (scripts/container-tools.sh installs podman)" >&2; exit 1; }
registry="${DOCKER_REGISTRY:-localhost/microservices-platform}"
version="${VERSION:-$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)}"
base="${BASE_IMAGE:-localhost/debian:bookworm}"
revision="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain 2>/dev/null | grep -v '^??' || true)" ]; then revision="$revision-dirty"; fi
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
started=$(date +%s)
say() { echo "docker-build [$(( $(date +%s) - started ))s]: $*" >&2; }

if [ "$base" = localhost/debian:bookworm ]; then
    BASE_IMAGE="$base" CONTAINER_ENGINE="$engine" scripts/build-base-image.sh
fi

say "cargo build --release -p platform (one link for every image)"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
cargo build --release --locked -p platform
mkdir -p build/docker
install -m 0755 "$target_dir/release/platform" build/docker/platform
say "binary: $(du -h build/docker/platform | cut -f1)"

# HEALTHCHECK and the labels live in the Docker image format; podman's default (OCI) drops them.
format=()
case "$(basename "$engine")" in podman | buildah) format=(--format docker) ;; esac
common=(--build-arg BINARY_SOURCE=prebuilt --build-arg "BASE_IMAGE=$base" --build-arg "VERSION=$version"
    --build-arg "REVISION=$revision" --build-arg "CREATED=$created")
runtime="$registry/runtime:$version"
say "building the shared run-time image $runtime"
"$engine" build --quiet "${format[@]}" "${common[@]}" --target runtime --tag "$runtime" . >/dev/null
for service in "${services[@]}"; do
    tag="$registry/$service:$version"
    say "building $tag"
    # No layer cache for these few metadata steps: buildah's ignores the build arguments in them.
    "$engine" build --quiet --no-cache "${format[@]}" "${common[@]}" \
        --target service \
        --build-arg "RUNTIME_IMAGE=$runtime" \
        --build-arg "SERVICE=$service" \
        --build-arg "PORT=${http_port[$service]}" \
        --build-arg "GRPC_PORT=${grpc_port[$service]:-}" \
        --tag "$tag" . >/dev/null
done
for service in "${services[@]}"; do
    tag="$registry/$service:$version"
    printf '  %-60s %s\n' "$tag" "$("$engine" image inspect "$tag" --format '{{.Size}}' | awk '{printf "%.1f MB", $1/1e6}')" >&2
done
say "done"
