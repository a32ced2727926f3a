#!/usr/bin/env bash
# Make sure Debian's Chromium is installed, for the browser tests of `kubectl models ui`
# (e2e/test_ui_browser.py drives it headless over the DevTools protocol, e2e/browser.py).
#
# Installs it with apt-get when missing (root only; `apt-get update` first only if the install fails;
# e2e/apt.sh). Prints the browser's path on the last line of stdout.
set -euo pipefail
# shellcheck source=e2e/apt.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/apt.sh"

find_browser() { command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null; }

apt_ensure "Chromium (for the browser tests)" find_browser chromium fonts-dejavu-core
find_browser
