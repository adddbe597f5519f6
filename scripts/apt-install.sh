#!/usr/bin/env bash
# Install Debian packages non-interactively: directly as root, through sudo otherwise.
#
#   bash scripts/apt-install.sh PACKAGE...
#
# DEBIAN_FRONTEND goes through `env`, so it reaches apt-get both as root (no sudo word in
# front) and through sudo (which drops the caller's environment). No recommended packages:
# the callers name all they need, and the install stays small and the same on any machine.
# No upgrade of a named package that is already there (only its missing dependencies come).
set -euo pipefail
[ "$#" -gt 0 ] || { echo "usage: $0 PACKAGE..." >&2; exit 2; }
command -v apt-get >/dev/null || { echo "apt-install: no apt-get here; install by hand: $*" >&2; exit 1; }
SUDO=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "apt-install: not root and no sudo; install by hand: $*" >&2; exit 1; }
  SUDO=(sudo)
fi
start=$(date +%s)
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --no-upgrade "$@" >/dev/null
echo "apt-install: $* in $(( $(date +%s) - start )) s"
