#!/usr/bin/env bash
# Build (once) and cache Flux's source-controller and kustomize-controller
# (github.com/fluxcd/source-controller, github.com/fluxcd/kustomize-controller), the GitOps engine of
# the regional-rollout e2e test (e2e/test_regions_e2e.py, issue 30): each region's control plane runs
# both, syncing from one Git repository on loopback.
#
# Everything comes from the Go module proxy, like e2e/build-argo-rollouts.sh: each controller is built
# through a generated wrapper module that copies the controller's own go.mod `replace` lines, except
# the ones that point at a directory of its repository (`=> ./api`): the `api` submodule is published
# on the proxy at the version the controller requires, so dropping them builds the same code. The CRDs
# are read from the module cache (config/crd/bases), never copied into the repository.
#
# Output: $MV_CACHE_DIR/flux-<version>/bin/{source-controller,kustomize-controller} (default
# ~/.cache/modelversioning/...). Prints the bin directory on the last line of stdout.
set -euo pipefail

# 1.9.x: the newest releases that build with Go 1.26 (1.10 needs Go 1.27).
FLUX_SOURCE_VERSION="${FLUX_SOURCE_VERSION:-v1.9.6}"
FLUX_KUSTOMIZE_VERSION="${FLUX_KUSTOMIZE_VERSION:-v1.9.6}"
# Module versions the module proxy refuses to serve (403 "This module version is not available"),
# replaced by the nearest patch release of the same minor that it serves; one `replace` line each,
# added to both wrapper modules (a module a controller does not use is ignored).
FLUX_PROXY_GAPS="${FLUX_PROXY_GAPS:-github.com/fluxcd/pkg/artifact => github.com/fluxcd/pkg/artifact v0.18.1}"

CACHE_ROOT="${MV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/modelversioning}"
OUT="$CACHE_ROOT/flux-source-${FLUX_SOURCE_VERSION}_kustomize-${FLUX_KUSTOMIZE_VERSION}"
BIN="$OUT/bin"

done_() { [[ -x "$BIN/source-controller" && -x "$BIN/kustomize-controller" ]]; }
if done_; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$OUT"
exec 9>"$OUT/.lock"  # two runs at once: one builds, the other waits for it
flock 9
if done_; then
  echo "$BIN"
  exit 0
fi

# shellcheck source=e2e/go-env.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/go-env.sh" "Flux"
step() { echo "[$(date +%H:%M:%S)] $*" >&2; }
t0=$SECONDS
mkdir -p "$BIN"

build() {  # build NAME VERSION: github.com/fluxcd/NAME@VERSION's main package into $BIN/NAME
  local name=$1 version=$2 module="github.com/fluxcd/$1" work="$OUT/src-$1" gomod goversion
  rm -rf "$work"
  mkdir -p "$work"
  step "resolving ${module}@${version}"
  gomod=$(cd "$work" && go mod download -json "${module}@${version}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  goversion=$(awk '$1=="go"{print $2; exit}' "$gomod")
  {
    echo "module local/${name}-build"
    echo
    echo "go ${goversion}"
    echo
    echo "require ${module} ${version}"
    echo
    awk '
      /^replace \($/ { inblock = 1; next }
      inblock && /^\)/ { inblock = 0; next }
      inblock && NF { sub(/^[ \t]+/, ""); line = "replace " $0 }
      !inblock && /^replace [^(]/ { line = $0 }
      line != "" { if (line !~ /=> \.\.?\//) print line; line = ""; next }
    ' "$gomod"
    while IFS= read -r gap; do
      [[ -n "$gap" ]] && echo "replace $gap"
    done <<< "$FLUX_PROXY_GAPS"
  } > "$work/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$module" > "$work/tools.go"
  step "go mod tidy ($name wrapper module, $(grep -c '^replace' "$work/go.mod") replace lines copied)"
  # -e: the tests of the controllers' packages import modules the proxy refuses (helmtestserver);
  # tidy records what it can, and the build below fails loudly if a package it compiles is missing
  (cd "$work" && go mod tidy -e >&2)
  step "building $name $version (slow the first time)"
  (cd "$work" && go build -trimpath -ldflags "-s -w" -o "$BIN/$name.tmp" "$module" >&2)
  mv -f "$BIN/$name.tmp" "$BIN/$name"
}

build source-controller "$FLUX_SOURCE_VERSION"
build kustomize-controller "$FLUX_KUSTOMIZE_VERSION"
step "flux source-controller ${FLUX_SOURCE_VERSION} + kustomize-controller ${FLUX_KUSTOMIZE_VERSION} ready in $((SECONDS - t0))s ($(go env GOVERSION))"
echo "$BIN"
