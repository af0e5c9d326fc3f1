# The project's Node validators (tools/*-validate): each pins its packages in a lockfile, and
# they are installed with `npm ci` once per lockfile into a cache directory outside the tree.
# Sourced.
# shellcheck shell=bash

# npm_tool_install TOOL_DIR CACHE_ROOT: installs TOOL_DIR's locked packages into
# CACHE_ROOT/<lockfile hash> unless already there, and prints that directory (use it as
# NODE_PATH=<dir>/node_modules). Needs node (18 or later) and npm; fails with a message.
npm_tool_install() {
    local tool=$1 root=$2 cache
    command -v node >/dev/null || { echo "node is not installed (Node 18 or later is needed)" >&2; return 1; }
    command -v npm >/dev/null || { echo "npm is not installed" >&2; return 1; }
    cache="$root/$(sha256sum "$tool/package-lock.json" | cut -c1-16)"
    if [ ! -f "$cache/.installed" ]; then
        echo "installing $(basename "$tool")'s npm packages into $cache (npm ci, once)" >&2
        rm -rf "$cache"
        mkdir -p "$cache"
        cp "$tool/package.json" "$tool/package-lock.json" "$cache/"
        timeout --kill-after=15 300 npm ci --prefix "$cache" --omit=dev --no-audit --no-fund --loglevel=error >&2 ||
            { echo "npm ci failed in $cache" >&2; return 1; }
        touch "$cache/.installed"
    fi
    echo "$cache"
}
