#!/usr/bin/env bash
# Make sure Debian's Chromium is installed, for the browser tests of `kubectl models ui`
# (e2e/test_ui_browser.py drives it headless over the DevTools protocol, e2e/browser.py).
#
# Installs it with apt-get when missing (root only; `apt-get update` first only if the install fails).
# Prints the browser's path on the last line of stdout.
set -euo pipefail
# apt and dpkg take one caller at a time: ./dev builds independent parts at once (flock waits).
apt_get() { flock "${MV_APT_LOCK:-/tmp/modelversioning-apt.lock}" apt-get "$@"; }

PACKAGES=(chromium fonts-dejavu-core)

find_browser() { command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null; }

if ! find_browser >/dev/null; then
  if [[ "$(id -u)" != 0 ]]; then
    echo "error: Chromium is needed for the browser tests; as root: apt-get install -y ${PACKAGES[*]}" >&2
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
  find_browser >/dev/null || { echo "error: chromium still missing after apt-get install" >&2; exit 1; }
fi
find_browser
