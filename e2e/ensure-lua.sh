#!/usr/bin/env bash
# Make sure Debian's Lua interpreters and dkjson are installed, for the Argo CD health-check tests
# (tests/test_argocd_health.py, e2e/test_gitops_health.py run docs/argocd/*.lua through
# e2e/argocd_health.lua): lua5.4, and lua5.1 because Argo CD's gopher-lua is a Lua 5.1 VM.
#
# Installs what is missing with apt-get (root only; `apt-get update` first only if the install fails).
# Prints the interpreters (space-separated) on the last line of stdout.
set -euo pipefail
# apt and dpkg take one caller at a time: ./dev builds independent parts at once (flock waits).
apt_get() { flock "${MV_APT_LOCK:-/tmp/modelversioning-apt.lock}" apt-get "$@"; }

INTERPRETERS=(lua5.4 lua5.1)
PACKAGES=(lua5.4 lua5.1 lua-dkjson)

have_all() {
  for lua in "${INTERPRETERS[@]}"; do
    command -v "$lua" >/dev/null 2>&1 || return 1
    "$lua" -e 'require("dkjson")' >/dev/null 2>&1 || return 1
  done
}

if ! have_all; then
  if [[ "$(id -u)" != 0 ]]; then
    echo "error: ${INTERPRETERS[*]} with dkjson are needed; as root: apt-get install -y ${PACKAGES[*]}" >&2
    exit 1
  fi
  command -v apt-get >/dev/null || { echo "error: apt-get not found; install ${PACKAGES[*]}" >&2; exit 1; }
  echo "[$(date +%H:%M:%S)] apt-get install ${PACKAGES[*]}" >&2
  apt_install() {
    DEBIAN_FRONTEND=noninteractive apt_get install -y -qq --no-install-recommends \
      -o DPkg::Lock::Timeout=300 "${PACKAGES[@]}" >&2
  }
  if ! apt_install; then
    apt_get update -qq -o DPkg::Lock::Timeout=300 >&2
    apt_install
  fi
  have_all || { echo "error: ${INTERPRETERS[*]} or dkjson still missing after apt-get install" >&2; exit 1; }
fi
echo "${INTERPRETERS[*]}"
