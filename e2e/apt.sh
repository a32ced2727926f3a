# shellcheck shell=bash
# Sourced by the e2e scripts that install Debian packages: one definition of the shared apt lock and of
# "install these packages when a check fails".
#
# apt and dpkg take one caller at a time: ./dev builds independent parts at once (flock waits).
apt_get() { flock "${MV_APT_LOCK:-/tmp/modelversioning-apt.lock}" apt-get "$@"; }

# apt_ensure WHAT CHECK PACKAGE...: run the command CHECK (a function name); when it fails, install the
# packages with apt-get (root only; `apt-get update` first only if the install fails) and check again.
# Exits with a clear error when it cannot (not root, no apt-get, still missing after the install).
apt_ensure() {
  local what=$1 check=$2
  shift 2
  "$check" >/dev/null 2>&1 && return 0
  if [[ "$(id -u)" != 0 ]]; then
    echo "error: $what needed; as root: apt-get install -y $*" >&2
    exit 1
  fi
  command -v apt-get >/dev/null || { echo "error: apt-get not found; install $*" >&2; exit 1; }
  echo "[$(date +%H:%M:%S)] apt-get install $*" >&2
  if ! _apt_install "$@"; then
    apt_get update -qq -o DPkg::Lock::Timeout=300 >&2
    _apt_install "$@"
  fi
  "$check" >/dev/null 2>&1 || { echo "error: $what still missing after apt-get install" >&2; exit 1; }
}

_apt_install() {
  DEBIAN_FRONTEND=noninteractive apt_get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=300 "$@" >&2
}
