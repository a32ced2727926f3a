#!/usr/bin/env bash
# Build (once) and cache the Argo Rollouts controller (github.com/argoproj/argo-rollouts), the peer
# that bench/peer.py measures the operator against.
#
# Everything comes from the Go module proxy; nothing else is downloaded, nothing is committed. The
# module is built through a generated wrapper module that copies argo-rollouts' own go.mod `replace`
# lines (Go applies `replace` only in the main module, so without them its k8s.io/* v0.0.0 pins do
# not resolve). The CRDs are not copied anywhere: bench/peer.py reads them from the module cache
# (`go mod download -json github.com/argoproj/argo-rollouts@<version>` → Dir/manifests/crds).
#
# Output: $MV_CACHE_DIR/argo-rollouts-<version>/bin/rollouts-controller (default
# ~/.cache/modelversioning/...). Prints the bin directory on the last line of stdout.
set -euo pipefail

ARGO_ROLLOUTS_VERSION="${ARGO_ROLLOUTS_VERSION:-v1.8.5}"
MODULE=github.com/argoproj/argo-rollouts

CACHE_ROOT="${MV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/modelversioning}"
OUT="$CACHE_ROOT/argo-rollouts-${ARGO_ROLLOUTS_VERSION}"
BIN="$OUT/bin"

if [[ -x "$BIN/rollouts-controller" ]]; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$OUT"
# Two runs on one machine may get here at once: one builds, the other waits for it.
exec 9>"$OUT/.lock"
flock 9
if [[ -x "$BIN/rollouts-controller" ]]; then
  echo "$BIN"
  exit 0
fi

# shellcheck source=e2e/go-env.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/go-env.sh" "Argo Rollouts"
step() { echo "[$(date +%H:%M:%S)] $*" >&2; }
t0=$SECONDS
WORK="$OUT/src"
rm -rf "$WORK"
mkdir -p "$WORK" "$BIN"

step "resolving ${MODULE}@${ARGO_ROLLOUTS_VERSION}"
gomod=$(cd "$WORK" && go mod download -json "${MODULE}@${ARGO_ROLLOUTS_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
goversion=$(awk '$1=="go"{print $2; exit}' "$gomod")
{
  echo "module local/argo-rollouts-build"
  echo
  echo "go ${goversion}"
  echo
  echo "require ${MODULE} ${ARGO_ROLLOUTS_VERSION}"
  echo
  # The module's replace directives, block and single-line forms alike (none is a local path in
  # the released go.mod; one would be refused here, which is the right failure).
  awk '
    /^replace \($/ { inblock = 1; next }
    inblock && /^\)/ { inblock = 0; next }
    inblock && NF { sub(/^[ \t]+/, ""); print "replace " $0; next }
    /^replace [^(]/ { print }
  ' "$gomod"
} > "$WORK/go.mod"
cat > "$WORK/tools.go" <<GO
//go:build tools

package tools

import _ "${MODULE}/cmd/rollouts-controller"
GO
step "go mod tidy (argo-rollouts wrapper module, $(grep -c '^replace' "$WORK/go.mod") replace lines copied)"
(cd "$WORK" && go mod tidy >&2)
ld="-s -w"
ld="$ld -X ${MODULE}/utils/version.version=${ARGO_ROLLOUTS_VERSION#v}"
ld="$ld -X ${MODULE}/utils/version.gitTag=${ARGO_ROLLOUTS_VERSION} -X ${MODULE}/utils/version.gitTreeState=clean"
step "building rollouts-controller ${ARGO_ROLLOUTS_VERSION} (slow the first time)"
(cd "$WORK" && go build -trimpath -ldflags "$ld" -o "$BIN/rollouts-controller.tmp" "${MODULE}/cmd/rollouts-controller" >&2)
mv -f "$BIN/rollouts-controller.tmp" "$BIN/rollouts-controller"
step "argo-rollouts ${ARGO_ROLLOUTS_VERSION} ready in $((SECONDS - t0))s ($(go env GOVERSION))"
echo "$BIN"
