#!/usr/bin/env bash
# Make sure Debian's Lua interpreters and dkjson are installed, for the Argo CD health-check tests
# (tests/test_argocd_health.py, e2e/test_gitops_health.py run docs/argocd/*.lua through
# e2e/argocd_health.lua): lua5.4, and lua5.1 because Argo CD's gopher-lua is a Lua 5.1 VM.
#
# Installs what is missing with apt-get (root only; `apt-get update` first only if the install fails;
# e2e/apt.sh). Prints the interpreters (space-separated) on the last line of stdout.
set -euo pipefail
# shellcheck source=e2e/apt.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/apt.sh"

INTERPRETERS=(lua5.4 lua5.1)

have_all() {
  for lua in "${INTERPRETERS[@]}"; do
    command -v "$lua" >/dev/null 2>&1 || return 1
    "$lua" -e 'require("dkjson")' >/dev/null 2>&1 || return 1
  done
}

apt_ensure "${INTERPRETERS[*]} with dkjson" have_all lua5.4 lua5.1 lua-dkjson
echo "${INTERPRETERS[*]}"
