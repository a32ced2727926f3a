#!/usr/bin/env bash
# Build (once) and cache the data-plane binaries the e2e harness runs on the host:
#   - traefik  (Gateway API implementation), built from its module source on the Go module proxy;
#   - prometheus from Debian's package (installed with apt-get if missing; the Debian service is
#     stopped and disabled: e2e/prometheus.py starts its own on loopback).
#
# Output: $MV_CACHE_DIR/<key>/bin (default ~/.cache/modelversioning/...), holding `traefik` and a
# `prometheus` symlink to the Debian binary. Prints the bin directory on the last line of stdout.
set -euo pipefail
# apt_get: apt-get under the shared apt lock (e2e/apt.sh)
# shellcheck source=e2e/apt.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/apt.sh"

TRAEFIK_VERSION="${TRAEFIK_VERSION:-v3.7.13}"

CACHE_ROOT="${MV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/modelversioning}"
KEY="dataplane_traefik-${TRAEFIK_VERSION}"
OUT="$CACHE_ROOT/$KEY"
BIN="$OUT/bin"
step() { echo "[$(date +%H:%M:%S)] $*" >&2; }
t0=$SECONDS
mkdir -p "$BIN"

# ---- Prometheus (Debian) ----------------------------------------------------
install_prometheus() {
  [[ $(id -u) == 0 ]] || { echo "error: prometheus is not installed and installing it needs root (apt-get install prometheus)" >&2; exit 1; }
  step "apt-get install prometheus (Debian package)"
  # Keep the package's service from starting while it installs (Debian's policy-rc.d protocol);
  # an existing policy is left alone.
  local policy=/usr/sbin/policy-rc.d created=""
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created=1
  fi
  apt_install() { DEBIAN_FRONTEND=noninteractive apt_get install -y -q --no-install-recommends prometheus >&2; }
  if ! apt_install; then
    step "apt-get install failed; updating the package lists once and retrying"
    apt_get update -q >&2 && apt_install || true
  fi
  if [[ -n $created ]]; then rm -f "$policy"; fi
  command -v prometheus >/dev/null || { echo "error: apt-get install prometheus failed" >&2; exit 1; }
}
if ! command -v prometheus >/dev/null; then install_prometheus; fi
# Never leave the Debian service running: it would listen on :9090 with its own config.
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
  systemctl disable --now prometheus-node-exporter >/dev/null 2>&1 || true
elif [[ -x /etc/init.d/prometheus ]]; then
  /etc/init.d/prometheus status >/dev/null 2>&1 && /etc/init.d/prometheus stop >&2 || true
  command -v update-rc.d >/dev/null && update-rc.d prometheus disable >/dev/null 2>&1 || true
fi
ln -sf "$(command -v prometheus)" "$BIN/prometheus"
# --prometheus: only this part (./dev test's unit tests run a real Prometheus; Traefik comes later)
if [[ "${1:-}" == "--prometheus" ]]; then echo "$BIN"; exit 0; fi

# ---- Traefik ------------------------------------------------------------------
# Three things keep the published module from building as is; each is fixed in the temporary copy
# only, and recorded in $BIN/traefik.buildinfo:
#  1. ./pkg/config/dynamic/ext is a nested module, so Go's module zip leaves it out and the
#     `replace` points at nothing; it is not on the proxy either. Upstream it is Traefik's OSS
#     extension point: empty structs HTTP, Router, RouterIng (+ RouterIng.ToRouter). Recreated so.
#  2. lego's DNS-01 provider registry (github.com/go-acme/lego/v5/providers/dns, imported only by
#     pkg/provider/acme for ACME DNS challenges) needs ~14 cloud DNS SDK modules this proxy does not
#     serve (403 "not available"). The import is replaced by a package whose
#     NewDNSChallengeProviderByName always fails: ACME DNS challenges are unavailable in this build
#     (the e2e harness uses no ACME at all). Applied only when the registry's modules cannot be fetched.
#  3. the containous/go-http-auth fork pinned by go.mod (basic/digest auth middlewares) is not on
#     every proxy; then the fork's previous version (what Traefik <= 3.6 pinned) is used.
GO_HTTP_AUTH_FALLBACK="${GO_HTTP_AUTH_FALLBACK:-v0.4.1-0.20200324110947-a37a7636d23e}"
patch_traefik_tree() {
  local tree="$1" info="$BIN/traefik.buildinfo.tmp"
  {
    echo "traefik ${TRAEFIK_VERSION} built $(date -u +%FT%TZ) with $(go env GOVERSION) from the Go module proxy"
    echo "patches of the temporary source copy:"
  } > "$info"
  if [[ ! -f "$tree/pkg/config/dynamic/ext/go.mod" ]]; then
    mkdir -p "$tree/pkg/config/dynamic/ext"
    printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24.0\n' > "$tree/pkg/config/dynamic/ext/go.mod"
    cat > "$tree/pkg/config/dynamic/ext/ext.go" <<'GO'
// Package ext is Traefik's dynamic-configuration extension point (empty in the OSS build).
package ext

// HTTP is a dynamic.HTTP extension.
type HTTP struct{}

// Router is a dynamic.Router extension.
type Router struct{}

// RouterIng is a RouterIng extension for ingress provider annotations.
type RouterIng struct{}

// ToRouter converts RouterIng to a Router.
func (r RouterIng) ToRouter() Router { return Router{} }
GO
    echo "  - recreated the nested module pkg/config/dynamic/ext (left out of the module zip)" >> "$info"
  fi
  local pinned
  pinned=$(awk '$1=="github.com/abbot/go-http-auth" && $2=="=>" {print $4}' "$tree/go.mod")
  if [[ -n $pinned ]] && ! (cd "$tree" && go mod download "github.com/containous/go-http-auth@${pinned}" >/dev/null 2>&1); then
    (cd "$tree" && go mod edit -replace="github.com/abbot/go-http-auth=github.com/containous/go-http-auth@${GO_HTTP_AUTH_FALLBACK}")
    echo "  - github.com/containous/go-http-auth ${pinned} is not on the proxy: used ${GO_HTTP_AUTH_FALLBACK}" >> "$info"
  fi
  if ! (cd "$tree" && go list -deps github.com/go-acme/lego/v5/providers/dns >/dev/null 2>&1); then
    mkdir -p "$tree/pkg/provider/acme/internal/nodns"
    cat > "$tree/pkg/provider/acme/internal/nodns/dns.go" <<'GO'
// Package dns stands in for github.com/go-acme/lego/v5/providers/dns, whose DNS SDK modules
// were not available from the Go module proxy when this binary was built.
package dns

import (
	"fmt"

	"github.com/go-acme/lego/v5/challenge"
)

// NewDNSChallengeProviderByName always fails: no ACME DNS-01 provider is compiled in.
func NewDNSChallengeProviderByName(name string) (challenge.Provider, error) {
	return nil, fmt.Errorf("ACME DNS challenge provider %q is not compiled into this build", name)
}
GO
    sed -i 's#"github.com/go-acme/lego/v5/providers/dns"#dns "github.com/traefik/traefik/v3/pkg/provider/acme/internal/nodns"#' \
      "$tree/pkg/provider/acme/provider.go"
    grep -q 'acme/internal/nodns' "$tree/pkg/provider/acme/provider.go" || { echo "error: could not patch pkg/provider/acme/provider.go" >&2; exit 1; }
    echo "  - ACME DNS-01 providers left out (lego's provider registry needs modules the proxy does not serve)" >> "$info"
  fi
  cat "$info" >&2
}

build_traefik() {
  # shellcheck source=e2e/go-env.sh
  source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/go-env.sh" "Traefik"
  local need have
  step "resolving github.com/traefik/traefik/v3@${TRAEFIK_VERSION}"
  local work="$OUT/src"
  mkdir -p "$work"
  local info dir gomod
  info=$(cd "$work" && go mod download -json "github.com/traefik/traefik/v3@${TRAEFIK_VERSION}")
  dir=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])' <<<"$info")
  gomod=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])' <<<"$info")
  need=$(awk '$1=="go"{print $2; exit}' "$gomod")
  have=$(go env GOVERSION); have=${have#go}
  if [[ $(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1) != "$need" ]]; then
    echo "error: Traefik ${TRAEFIK_VERSION} needs Go >= ${need}; found go${have}" >&2
    exit 1
  fi
  # go.mod has a `replace` to a directory inside the module (./pkg/config/dynamic/ext), which
  # `go install pkg@version` refuses: build in a writable copy of the module's own source tree.
  local tree="$work/traefik-${TRAEFIK_VERSION}"
  rm -rf "$tree"
  cp -r "$dir" "$tree"
  chmod -R u+w "$tree"
  patch_traefik_tree "$tree"
  step "building traefik ${TRAEFIK_VERSION} (slow the first time)"
  (cd "$tree" && go build -trimpath -ldflags "-s -w \
      -X github.com/traefik/traefik/v3/pkg/version.Version=${TRAEFIK_VERSION} \
      -X github.com/traefik/traefik/v3/pkg/version.Codename=modelversioning-e2e \
      -X github.com/traefik/traefik/v3/pkg/version.BuildDate=1970-01-01T00:00:00Z" \
      -o "$BIN/traefik.tmp" ./cmd/traefik >&2)
  mv "$BIN/traefik.buildinfo.tmp" "$BIN/traefik.buildinfo"
  mv "$BIN/traefik.tmp" "$BIN/traefik"
  rm -rf "$tree"   # the module cache keeps the source; the copy was only for building
}
if [[ ! -x "$BIN/traefik" ]]; then build_traefik; fi

[[ -x "$BIN/traefik" && -x "$BIN/prometheus" ]] || { echo "error: data-plane binaries missing from $BIN" >&2; exit 1; }
step "data-plane binaries ready in $((SECONDS - t0))s"
echo "$BIN"
