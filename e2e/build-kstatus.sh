#!/usr/bin/env bash
# Build (once) and cache kstatus-check (e2e/kstatus-check/main.go): the kstatus library that Flux's
# health checks use, sigs.k8s.io/cli-utils/pkg/kstatus/status, run on objects given as JSON.
#
# Everything comes from the Go module proxy; nothing else is downloaded. The go.mod is generated
# here. The cache key holds the cli-utils version and a hash of main.go, so an edited checker is
# rebuilt. Output: $MV_CACHE_DIR/kstatus-check_<version>_<hash>/bin (default ~/.cache/modelversioning).
# Prints the bin directory on the last line of stdout.
set -euo pipefail

CLI_UTILS_VERSION="${CLI_UTILS_VERSION:-v0.37.2}"

SRC_DIR="$(cd "$(dirname "$0")" && pwd)/kstatus-check"
CACHE_ROOT="${MV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/modelversioning}"
SRC_HASH="$(sha256sum "$SRC_DIR/main.go" | cut -c1-12)"
KEY="kstatus-check_cli-utils-${CLI_UTILS_VERSION}_src-${SRC_HASH}"
OUT="$CACHE_ROOT/$KEY"
BIN="$OUT/bin"

if [[ -x "$BIN/kstatus-check" ]]; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { echo "error: Go is required to build kstatus-check" >&2; exit 1; }

mkdir -p "$OUT"
# Two test runs on one machine may get here at once: one builds, the other waits for it.
exec 9>"$OUT/.lock"
flock 9
if [[ -x "$BIN/kstatus-check" ]]; then
  echo "$BIN"
  exit 0
fi

# shellcheck source=e2e/go-env.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/go-env.sh" "kstatus-check"

step() { echo "[$(date +%H:%M:%S)] $*" >&2; }
t0=$SECONDS
WORK="$OUT/src"
rm -rf "$WORK"
mkdir -p "$WORK" "$BIN"
cp "$SRC_DIR/main.go" "$WORK/main.go"
cat > "$WORK/go.mod" <<GOMOD
module local/kstatus-check

go 1.22

require sigs.k8s.io/cli-utils ${CLI_UTILS_VERSION}
GOMOD
step "go mod tidy (kstatus-check, sigs.k8s.io/cli-utils ${CLI_UTILS_VERSION})"
(cd "$WORK" && go mod tidy >&2)
step "building kstatus-check"
(cd "$WORK" && go build -ldflags "-s -w" -o "$BIN/kstatus-check.tmp" . >&2)
mv -f "$BIN/kstatus-check.tmp" "$BIN/kstatus-check"
step "kstatus-check ready in $((SECONDS - t0))s ($(go version | awk '{print $3}'), cli-utils ${CLI_UTILS_VERSION})"
echo "$BIN"
