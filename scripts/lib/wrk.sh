# Installs wrk from Debian's packages when it is missing (the benchmarks' load generator).
# Sourced; expects `say`.
# shellcheck shell=bash

need_wrk() {
    command -v wrk >/dev/null && return
    say "installing wrk (Debian package)"
    local sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
    $sudo_cmd apt-get update -qq
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
}
