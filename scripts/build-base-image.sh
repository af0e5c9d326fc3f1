#!/usr/bin/env bash
# Builds the Debian base image every platform image starts from, locally, for machines that can
# reach a Debian package mirror but no container registry: debootstrap (minbase) from the mirror
# apt already uses, then `podman import`. About a minute; skipped when the image exists.
#
#   scripts/build-base-image.sh [--force]      # → localhost/debian:bookworm
#
# Where a registry is reachable, `podman pull docker.io/library/debian:bookworm-slim` and
# `BASE_IMAGE=docker.io/library/debian:bookworm-slim make docker-build` do the same job.
set -euo pipefail

image="${BASE_IMAGE:-localhost/debian:bookworm}"
suite=bookworm
engine="${CONTAINER_ENGINE:-podman}"

log() { echo "base-image: $*" >&2; }

if [ "${1:-}" != "--force" ] && "$engine" image exists "$image" 2>/dev/null; then
    log "$image exists (--force rebuilds it)"
    exit 0
fi

# The machine's own mirror: the first Debian URI in its apt sources (deb822 or one-line form).
mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
    mirror=$(grep -hoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1 | awk '{print $2}' || true)
fi
if [ -z "$mirror" ]; then
    mirror=$(grep -hoE '^deb +[^ ]+' /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 | awk '{print $2}' || true)
fi
if [ -z "$mirror" ]; then
    log "no Debian mirror found in /etc/apt; set DEBIAN_MIRROR"
    exit 1
fi

rootfs=$(mktemp -d /tmp/base-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
log "debootstrap --variant=minbase $suite from the configured mirror (about a minute)"
debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >/tmp/debootstrap.log 2>&1 || {
    tail -20 /tmp/debootstrap.log >&2
    log "debootstrap failed (full log: /tmp/debootstrap.log)"
    exit 1
}
# Images built on this base install packages from the same mirror.
cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
SOURCES
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
log "importing as $image"
tar -C "$rootfs" -c . | "$engine" import --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
log "done: $("$engine" image inspect "$image" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
