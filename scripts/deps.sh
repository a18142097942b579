#!/usr/bin/env bash
# deps.sh — installs the Debian 12 packages paycell needs to build and test.
# Idempotent: installs only what is missing. apt-get as root, sudo otherwise.
#
#   scripts/deps.sh            the build and test toolchain (make test, make demo)
#   scripts/deps.sh --browser  only headless Chromium (and a font) for the big
#                              screen's browser test, tests/integration/screen.sh;
#                              opt-in, so `make demo` never pulls in a browser
set -euo pipefail

packages=(gcc make clang libclang-rt-14-dev libxxhash-dev libssl-dev iproute2 procps curl iptables)
case "${1:-}" in
"") ;;
--browser) packages=(chromium fonts-dejavu-core) ;;
*)
    echo "usage: scripts/deps.sh [--browser]" >&2
    exit 2
    ;;
esac

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
