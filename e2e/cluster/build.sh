#!/usr/bin/env bash
# Builds the local test cluster's binaries from Go modules (no container
# engine runs here) into a cache outside git, keyed by version, so a second
# run builds nothing. Prints the bin directory as its last line.
#
#   build.sh [all]     everything: what `cluster` builds, then helm (the chart tests)
#   build.sh cluster   only what starting the cluster needs (up.sh, node-up.sh,
#                      kubectl): `make demo` starts with this and builds helm later
#
# With SLIPWAY_REAL_NODE=1 it also builds kubelet and kube-proxy (node-up.sh).
# The Kubernetes binaries and etcd come from one `go build` (one package graph:
# the binaries' shared packages are compiled once and one binary links while
# the next one's packages compile); progress every 30 s, the build's output in
# $cache/logs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
what=${1:-all}
case $what in
  all | cluster) ;;
  *) echo "usage: build.sh [all|cluster] (got '$what')" >&2; exit 2 ;;
esac
cache=${SLIPWAY_CACHE_DIR:-$HOME/.cache/slipway}
bin="$cache/bin/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION"
logs="$cache/logs"
mkdir -p "$bin" "$logs"
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

# Waits for PID, saying every 30 s how long it has run and how many packages
# it compiled (the lines `go build -v` wrote to LOG); returns PID's status.
# A script's background job ignores SIGINT, so Ctrl-C (or SIGTERM) ends it here.
wait_progress() {  # PID WHAT LOG
  local pid=$1 what=$2 out=$3 start=$SECONDS next=30
  # shellcheck disable=SC2064 # this PID, now
  trap "kill -TERM $pid 2>/dev/null; exit 130" INT TERM
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if [ $((SECONDS - start)) -ge "$next" ] && kill -0 "$pid" 2>/dev/null; then
      log "still $what ($((SECONDS - start)) s, $(grep -vc '^go: ' "$out" || true) packages compiled)"
      next=$((next + 30))
    fi
  done
  trap - INT TERM
  wait "$pid"
}

# NAME=PACKAGE (inside the wrapper module) ...: builds the missing ones.
build_tools() {
  local names=() pkgs=() spec name
  for spec in "$@"; do
    name=${spec%%=*}
    [ -x "$bin/$name" ] && continue
    names+=("$name"); pkgs+=("${spec#*=}")
  done
  [ ${#names[@]} -gt 0 ] || return 0
  local out="$logs/build-k8s-$KUBE_VERSION.log" start=$SECONDS
  tmp="$bin/.build.$$"  # global: the EXIT trap removes it
  log "downloading Go modules (cached after the first run)"
  (cd "$here/tools" && go mod download)
  log "building ${names[*]} (one go build; the first build takes several minutes; log $out)"
  rm -rf "$tmp"; mkdir -p "$tmp"
  trap 'rm -rf "$tmp"' EXIT  # an interrupted build leaves nothing half-made in $bin
  (cd "$here/tools" && exec go build -v -trimpath -ldflags "$(kube_ldflags)" -o "$tmp/" "${pkgs[@]}") >"$out" 2>&1 &
  if ! wait_progress $! "building ${names[*]}" "$out"; then
    tail -n 20 "$out" >&2; rm -rf "$tmp"
    log "ERROR: go build of ${names[*]} failed (log $out)"; exit 1
  fi
  for name in "${names[@]}"; do mv "$tmp/$name" "$bin/$name"; done
  rmdir "$tmp"; trap - EXIT
  log "built ${names[*]} in $((SECONDS - start)) s"
}

# MODULE VERSION NAME...: `go install`s the missing MODULE/NAME@VERSION in one invocation.
install_tools() {
  local module=$1 version=$2 names=() pkgs=() name
  shift 2
  for name in "$@"; do
    [ -x "$bin/$name" ] && continue
    names+=("$name"); pkgs+=("$module/$name@$version")
  done
  [ ${#names[@]} -gt 0 ] || return 0
  local out="$logs/install-${names[0]}-$version.log" start=$SECONDS
  tmp=$(mktemp -d)  # global: the EXIT trap removes it
  trap 'rm -rf "$tmp"' EXIT
  log "installing ${names[*]} ($module $version; log $out)"
  GOBIN="$tmp" go install -v -trimpath -ldflags "-s -w" "${pkgs[@]}" >"$out" 2>&1 &
  if ! wait_progress $! "installing ${names[*]}" "$out"; then
    tail -n 20 "$out" >&2; rm -rf "$tmp"
    log "ERROR: go install of ${names[*]} failed (log $out)"; exit 1
  fi
  for name in "${names[@]}"; do mv "$tmp/$name" "$bin/$name"; done
  rmdir "$tmp"; trap - EXIT
  log "installed ${names[*]} in $((SECONDS - start)) s"
}

kube=(
  etcd=./etcd
  kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver
  kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager
  kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler
  kubectl=k8s.io/kubernetes/cmd/kubectl
)
if [ "${SLIPWAY_REAL_NODE:-0}" = 1 ]; then
  kube+=(kubelet=k8s.io/kubernetes/cmd/kubelet kube-proxy=k8s.io/kubernetes/cmd/kube-proxy)
fi
build_tools "${kube[@]}"
install_tools sigs.k8s.io/kwok/cmd "$KWOK_VERSION" kwok kwokctl
if [ "$what" = all ]; then
  install_tools helm.sh/helm/v3/cmd "$HELM_VERSION" helm
fi
log "$what binaries ready"
echo "$bin"
