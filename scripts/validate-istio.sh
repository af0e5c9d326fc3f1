#!/usr/bin/env bash
# Validates the Istio resources against Istio's CRD schemas (npm @kubernetes-models/istio 2.3.0,
# Istio 1.18) and the mesh rules the schemas cannot express (istio/README.md): no mesh retries,
# timeouts never shorter than the caller's deadline, weights summing to 100, subsets that exist.
#
#   scripts/validate-istio.sh            # istio/ as deployed: `kubectl kustomize istio/`
#   scripts/validate-istio.sh FILE...    # these files instead (each one a consistent set), e.g.
#                                        # what `scripts/deploy.sh --dry-run` rendered
#
# The validator's packages come from tools/istio-validate/package-lock.json, installed with
# `npm ci` once into a cache directory keyed by the lockfile (ISTIO_VALIDATE_CACHE, default
# ~/.cache/microservices-platform/istio-validate). Needs node (>= 18) and npm; kubectl for the
# default mode. Exits non-zero on any problem.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tool="$root/tools/istio-validate"

log() { echo "validate-istio: $*" >&2; }
die() { log "$*"; exit 1; }

# shellcheck source=scripts/lib/npm-tool.sh
source "$root/scripts/lib/npm-tool.sh"
cache=$(npm_tool_install "$tool" \
    "${ISTIO_VALIDATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/microservices-platform/istio-validate}") ||
    die "cannot install the validator's packages"

validate() { NODE_PATH="$cache/node_modules" node "$tool/validate.js" "$@"; }

if [ "$#" -gt 0 ]; then
    validate "$@"
    exit
fi

command -v kubectl >/dev/null || die "kubectl is not installed (it renders istio/ with kustomize)"

# Every resource file in istio/ must be part of the kustomization, or it would escape this check
# and deploy.sh alike.
missing=0
for file in "$root"/istio/*.yaml; do
    name="$(basename "$file")"
    [ "$name" = kustomization.yaml ] && continue
    if ! grep -Eq "^ *- *$name *$" "$root/istio/kustomization.yaml"; then
        log "istio/$name is not listed in istio/kustomization.yaml"
        missing=1
    fi
done
[ "$missing" = 0 ] || exit 1

rendered="$(mktemp)"
trap 'rm -f "$rendered"' EXIT
kubectl kustomize "$root/istio" >"$rendered" || die "kubectl kustomize istio/ failed"
validate "$rendered"
