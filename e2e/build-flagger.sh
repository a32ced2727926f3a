#!/usr/bin/env bash
# Build (once) and cache the Flagger controller (github.com/fluxcd/flagger), the second peer that
# bench/peer.py measures the operator against (its rollback on a failed check).
#
# Everything comes from the Go module proxy; nothing else is downloaded, nothing is committed. Flagger's
# go.mod has no `replace` lines, so `go install <module>/cmd/flagger@<version>` builds it as released
# (its own go.sum pins every dependency). The proxy does not serve every tag: v1.41.0 is the newest it
# serves (v1.42.0, v1.40.0 and v1.39.0 answer 403); it needs Go >= 1.24. The CRDs are not copied
# anywhere: bench/peer_flagger.py reads them from the module cache (<module>/artifacts/flagger/crd.yaml).
#
# Output: $MV_CACHE_DIR/flagger-<version>/bin/flagger (default ~/.cache/modelversioning/...). Prints the
# bin directory on the last line of stdout.
set -euo pipefail

FLAGGER_VERSION="${FLAGGER_VERSION:-v1.41.0}"
MODULE=github.com/fluxcd/flagger

CACHE_ROOT="${MV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/modelversioning}"
OUT="$CACHE_ROOT/flagger-${FLAGGER_VERSION}"
BIN="$OUT/bin"

if [[ -x "$BIN/flagger" ]]; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$OUT"
# Two runs on one machine may get here at once: one builds, the other waits for it.
exec 9>"$OUT/.lock"
flock 9
if [[ -x "$BIN/flagger" ]]; then
  echo "$BIN"
  exit 0
fi

# shellcheck source=e2e/go-env.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/go-env.sh" "Flagger"
step() { echo "[$(date +%H:%M:%S)] $*" >&2; }
t0=$SECONDS
TMPBIN="$OUT/bin.tmp"
rm -rf "$TMPBIN"
mkdir -p "$TMPBIN" "$BIN"

step "building flagger ${FLAGGER_VERSION} from the Go module proxy (slow the first time)"
# `go install pkg@version` runs outside any main module: GOFLAGS' -mod=mod does not apply to it.
(cd "$OUT" && GOFLAGS="-buildvcs=false" GOBIN="$TMPBIN" \
  go install -trimpath -ldflags "-s -w" "${MODULE}/cmd/flagger@${FLAGGER_VERSION}" >&2)
mv -f "$TMPBIN/flagger" "$BIN/flagger"
rm -rf "$TMPBIN"
step "flagger ${FLAGGER_VERSION} ready in $((SECONDS - t0))s ($(go env GOVERSION))"
echo "$BIN"
