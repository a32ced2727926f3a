#!/usr/bin/env bash
# Build (once) and cache the binaries of a real Kubernetes control plane:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, kwok,
# helm, and versitygw (an S3-compatible server used by the artifact e2e tests).
#
# Everything comes from the Go module proxy; nothing else is downloaded.
# Output: $MV_CACHE_DIR/<versions>/bin (default ~/.cache/modelversioning/...).
# Prints the bin directory on the last line of stdout.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.8.0}"

CACHE_ROOT="${MV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/modelversioning}"
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_vgw-${VERSITYGW_VERSION}"
OUT="$CACHE_ROOT/$KEY"
BIN="$OUT/bin"
WANT=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok helm versitygw)

have_all() {
  for b in "${WANT[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done
}

if have_all; then
  echo "$BIN"
  exit 0
fi

# shellcheck source=e2e/go-env.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/go-env.sh" "the control plane"
mkdir -p "$BIN"
WORK="$OUT/src"
mkdir -p "$WORK"
step() { echo "[$(date +%H:%M:%S)] $*" >&2; }
t0=$SECONDS

# ---- Kubernetes -----------------------------------------------------------
build_k8s() {
  local d="$WORK/kubernetes"
  mkdir -p "$d"
  step "resolving k8s.io/kubernetes@${K8S_VERSION}"
  local gomod
  gomod=$(cd "$d" && go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  local staging_version="v0${K8S_VERSION#v1}"   # v1.34.4 -> v0.34.4
  local goversion
  goversion=$(awk '$1=="go"{print $2; exit}' "$gomod")
  {
    echo "module local/k8s-build"
    echo
    echo "go ${goversion}"
    echo
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo
    # Every staging module the release lists at v0.0.0 is replaced in its own
    # go.mod by ./staging/...; point each at its published release instead.
    awk '/^require|^\t/ {print}' "$gomod" | awk '$1 ~ /^k8s\.io\// && $2=="v0.0.0" {print $1}' | sort -u | while read -r m; do
      echo "replace $m => $m ${staging_version}"
    done
  } > "$d/go.mod"
  cat > "$d/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  step "go mod tidy (kubernetes wrapper module)"
  (cd "$d" && go mod tidy >&2)
  local major minor
  major=$(echo "$K8S_VERSION" | sed -E 's/^v([0-9]+)\..*/\1/')
  minor=$(echo "$K8S_VERSION" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=${K8S_VERSION} -X $p.gitMajor=${major} -X $p.gitMinor=${minor} -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  step "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (slow the first time)"
  (cd "$d" && go build -ldflags "$ld" -o "$BIN/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler \
      k8s.io/kubernetes/cmd/kubectl >&2)
}

build_etcd() {
  local d="$WORK/etcd"
  mkdir -p "$d"
  cat > "$d/go.mod" <<GOMOD
module local/etcd-build

go 1.24

require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}
GOMOD
  cat > "$d/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  step "building etcd ${ETCD_VERSION}"
  (cd "$d" && go mod tidy >&2 && go build -ldflags "-s -w" -o "$BIN/etcd" . >&2)
}

build_installable() {  # name module@version
  step "building $1 ($2)"
  GOBIN="$BIN" go install -ldflags "-s -w" "$2" >&2
}

[[ -x "$BIN/etcd" ]] || build_etcd
[[ -x "$BIN/kwok" ]] || build_installable kwok "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
[[ -x "$BIN/kube-apiserver" && -x "$BIN/kubectl" && -x "$BIN/kube-scheduler" && -x "$BIN/kube-controller-manager" ]] || build_k8s
[[ -x "$BIN/helm" ]] || build_installable helm "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
[[ -x "$BIN/versitygw" ]] || build_installable versitygw "github.com/versity/versitygw/cmd/versitygw@${VERSITYGW_VERSION}"

have_all || { echo "error: some binaries are missing from $BIN" >&2; exit 1; }
step "control-plane binaries ready in $((SECONDS - t0))s"
echo "$BIN"
