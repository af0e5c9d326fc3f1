#!/usr/bin/env bash
# Builds the PostgreSQL, Redis and Prometheus images docker-compose.ci.yml uses, from Debian's
# packages on the local base image (for machines that cannot pull the upstream ones).
set -euo pipefail
cd "$(dirname "$0")/.."
engine="${CONTAINER_ENGINE:-$(command -v podman || command -v docker)}"
scripts/build-base-image.sh
for image in postgres:15 redis:7 prometheus:2.42; do
    name=${image%%:*}
    echo "compose-images: localhost/microservices-platform/$image" >&2
    "$engine" build --quiet --build-arg BASE_IMAGE=localhost/debian:bookworm \
        -t "localhost/microservices-platform/$image" "deploy/images/$name" >/dev/null
done
