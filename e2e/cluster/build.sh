#!/usr/bin/env bash
# Builds the local test cluster's binaries from Go modules (no container
# engine runs here) into a cache outside git, keyed by version, so a second
# run builds nothing. Prints the bin directory as its last line.
# With SLIPWAY_REAL_NODE=1 it also builds kubelet and kube-proxy (node-up.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=${SLIPWAY_CACHE_DIR:-$HOME/.cache/slipway}
bin="$cache/bin/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION"
mkdir -p "$bin"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { printf '[cluster-build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

kube_ldflags() {
  local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  local f=""
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    f+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    f+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  printf '%s' "-s -w$f"
}

build_tool() {  # name, package (inside the wrapper module)
  local name=$1 pkg=$2
  if [ -x "$bin/$name" ]; then return; fi
  log "building $name ($pkg) - the first build takes several minutes"
  local start=$SECONDS
  (cd "$here/tools" && go build -trimpath -ldflags "$(kube_ldflags)" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  log "built $name in $((SECONDS - start))s"
}

install_tool() {  # name, module path@version
  local name=$1 pkg=$2
  if [ -x "$bin/$name" ]; then return; fi
  log "installing $name ($pkg)"
  local start=$SECONDS tmp
  tmp=$(mktemp -d)
  GOBIN="$tmp" go install -trimpath -ldflags "-s -w" "$pkg"
  mv "$tmp/$name" "$bin/$name"
  rmdir "$tmp"
  log "installed $name in $((SECONDS - start))s"
}

log "downloading Go modules (cached after the first run)"
(cd "$here/tools" && go mod download)
build_tool etcd ./etcd
build_tool kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build_tool kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build_tool kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
build_tool kubectl k8s.io/kubernetes/cmd/kubectl
if [ "${SLIPWAY_REAL_NODE:-0}" = 1 ]; then
  build_tool kubelet k8s.io/kubernetes/cmd/kubelet
  build_tool kube-proxy k8s.io/kubernetes/cmd/kube-proxy
fi
install_tool kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
install_tool kwokctl "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
install_tool helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
log "all binaries ready"
echo "$bin"
