#!/usr/bin/env bash
# As the upstream image's entrypoint: a `redis-server …` command runs with protected mode off
# (no config file binds every address, and the container network is the boundary).
set -euo pipefail
if [ "${1:-}" = redis-server ]; then
    shift
    exec redis-server --protected-mode no "$@"
fi
exec "$@"
