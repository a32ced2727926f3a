#!/usr/bin/env bash
# Build (once) and cache what the real e2e node (e2e/node.py) runs besides the control plane:
#   kubelet and kube-proxy  - from k8s.io/kubernetes on the Go module proxy, with the same wrapper-module
#                             approach as build-control-plane.sh (same versions, so the Go build cache is
#                             shared with the control plane's build)
#   crictl                  - sigs.k8s.io/cri-tools from the Go module proxy (debugging, pod clean-up)
# and installs the Debian packages the node and the image build need (containerd, runc, CNI plugins,
# iptables, nftables, debootstrap, umoci, buildah, gcc; libjemalloc2, the operator's allocator, as in its
# image; docker-registry (distribution 2.8) and apache2-utils (htpasswd), the real OCI registry of the
# oci:// tests, e2e/oci_registry.py) when one is missing.
#
#   bash e2e/build-node.sh              # packages + binaries; prints the bin directory on the last line
#   bash e2e/build-node.sh --packages   # only the Debian packages
#
# Output: $MV_CACHE_DIR/node_<versions>/bin (default ~/.cache/modelversioning/...).
set -euo pipefail
# apt_get: apt-get under the shared apt lock (e2e/apt.sh)
# shellcheck source=e2e/apt.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/apt.sh"

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
CRICTL_VERSION="${CRICTL_VERSION:-v1.34.0}"
PACKAGES=(containerd runc containernetworking-plugins iptables nftables iproute2 debootstrap debian-archive-keyring gpgv wget
          umoci buildah gcc libc6-dev libjemalloc2 docker-registry apache2-utils)

CACHE_ROOT="${MV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/modelversioning}"
KEY="node_k8s-${K8S_VERSION}_crictl-${CRICTL_VERSION}"
OUT="$CACHE_ROOT/$KEY"
BIN="$OUT/bin"
WANT=(kubelet kube-proxy crictl)
step() { echo "[$(date +%H:%M:%S)] $*" >&2; }

ensure_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "error: the real node needs these Debian packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  step "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_get update -qq >&2
  apt_get install -y -qq --no-install-recommends "${missing[@]}" >&2
  # the tests start their own registries on loopback: not the package's service on :5000 (systemd hosts)
  if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null \
      && systemctl is-enabled docker-registry >/dev/null 2>&1; then
    systemctl disable --now docker-registry >&2 || true
  fi
}

ensure_packages
[[ "${1:-}" == "--packages" ]] && exit 0

have_all() {
  for b in "${WANT[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done
}
if have_all; then
  echo "$BIN"
  exit 0
fi

# shellcheck source=e2e/go-env.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/go-env.sh" "the kubelet"
mkdir -p "$BIN"
WORK="$OUT/src"
mkdir -p "$WORK"
t0=$SECONDS

build_node_k8s() {
  # The same go.mod as build-control-plane.sh's wrapper module (k8s.io/kubernetes plus every staging
  # module at its published release), so the dependency versions and therefore the Go build cache
  # entries are the control plane's.
  local d="$WORK/kubernetes"
  mkdir -p "$d"
  step "resolving k8s.io/kubernetes@${K8S_VERSION}"
  local gomod
  gomod=$(cd "$d" && go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  local staging_version="v0${K8S_VERSION#v1}"
  local goversion
  goversion=$(awk '$1=="go"{print $2; exit}' "$gomod")
  {
    echo "module local/k8s-node-build"
    echo
    echo "go ${goversion}"
    echo
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo
    awk '/^require|^\t/ {print}' "$gomod" | awk '$1 ~ /^k8s\.io\// && $2=="v0.0.0" {print $1}' | sort -u | while read -r m; do
      echo "replace $m => $m ${staging_version}"
    done
  } > "$d/go.mod"
  cat > "$d/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  step "go mod tidy (kubelet wrapper module)"
  (cd "$d" && go mod tidy >&2)
  local major minor
  major=$(echo "$K8S_VERSION" | sed -E 's/^v([0-9]+)\..*/\1/')
  minor=$(echo "$K8S_VERSION" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=${K8S_VERSION} -X $p.gitMajor=${major} -X $p.gitMinor=${minor} -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  step "building kubelet and kube-proxy ${K8S_VERSION} (slow the first time)"
  (cd "$d" && go build -ldflags "$ld" -o "$BIN/" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy >&2)
}

[[ -x "$BIN/kubelet" && -x "$BIN/kube-proxy" ]] || build_node_k8s
if [[ ! -x "$BIN/crictl" ]]; then
  step "building crictl (sigs.k8s.io/cri-tools@${CRICTL_VERSION})"
  GOBIN="$BIN" go install -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION}" \
    "sigs.k8s.io/cri-tools/cmd/crictl@${CRICTL_VERSION}" >&2
fi

have_all || { echo "error: some binaries are missing from $BIN" >&2; exit 1; }
step "node binaries ready in $((SECONDS - t0))s"
echo "$BIN"
