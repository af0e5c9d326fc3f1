#!/usr/bin/env bash
# Renders the staging overlay into plain YAML files, so `kubectl apply -f k8s/staging/` works
# without kustomize. CI (scripts/validate-k8s.sh) fails when k8s/staging/ differs from a fresh
# render: after changing k8s/base or k8s/overlays/staging, run this and commit the result.
#
# Usage: scripts/render-k8s.sh [K8S_DIR]   (K8S_DIR defaults to the repository's k8s/; the
#        tests pass a modified copy)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
k8s_dir="${1:-$repo/k8s}"
overlay="$k8s_dir/overlays/staging"
out="$k8s_dir/staging"

command -v kubectl >/dev/null || { echo "render-k8s: kubectl not found (kustomize is built into kubectl >= 1.14)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

kubectl kustomize "$overlay" >"$tmp/render.yaml"
# The folder is generated whole: nothing in it survives a re-render.
rm -rf "$out"
python3 "$repo/scripts/k8s-split.py" render "$tmp/render.yaml" "$out" k8s/overlays/staging
