#!/usr/bin/env bash
# Starts (or reuses) the local test cluster: a real kube-apiserver, etcd,
# controller-manager and scheduler built from source (build.sh), run by
# kwokctl's binary runtime with RBAC on, plus fake kwok nodes whose pods
# become Ready. Prints the kubeconfig path as its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
name=${SLIPWAY_CLUSTER_NAME:-slipway}
nodes=${SLIPWAY_CLUSTER_NODES:-2}
cache=${SLIPWAY_CACHE_DIR:-$HOME/.cache/slipway}
export KWOK_WORKDIR="$cache/kwok"
export KWOK_KUBE_VERSION=$KUBE_VERSION
kubeconfig="$KWOK_WORKDIR/clusters/$name/slipway.kubeconfig"

log() { printf '[cluster-up %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

bin=$("$here/build.sh" | tail -n 1)
export PATH="$bin:$PATH"

healthy() {
  [ -f "$kubeconfig" ] && kubectl --kubeconfig "$kubeconfig" --request-timeout=5s get --raw /readyz >/dev/null 2>&1
}

if healthy; then
  log "reusing running cluster '$name'"
else
  if kwokctl get clusters 2>/dev/null | grep -qx "$name"; then
    log "cluster '$name' exists but is not healthy: recreating it"
    kwokctl delete cluster --name "$name" >&2 || true
  fi
  log "creating cluster '$name' (kube $KUBE_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION)"
  mkdir -p "$(dirname "$kubeconfig")"
  kwokctl create cluster --name "$name" --runtime binary \
    --kube-authorization=true --kube-admission=true \
    --kube-apiserver-binary "$bin/kube-apiserver" \
    --kube-controller-manager-binary "$bin/kube-controller-manager" \
    --kube-scheduler-binary "$bin/kube-scheduler" \
    --kwok-controller-binary "$bin/kwok" \
    --etcd-binary "$bin/etcd" \
    --kubeconfig "$kubeconfig" \
    --wait 120s >&2
fi

have=$(kubectl --kubeconfig "$kubeconfig" get nodes --no-headers 2>/dev/null | wc -l)
if [ "$have" -lt "$nodes" ]; then
  log "scaling fake nodes to $nodes"
  kwokctl scale node --name "$name" --replicas "$nodes" >&2
fi
log "waiting for $nodes Ready nodes"
for _ in $(seq 1 60); do
  ready=$(kubectl --kubeconfig "$kubeconfig" get nodes --no-headers 2>/dev/null | grep -c " Ready " || true)
  [ "$ready" -ge "$nodes" ] && break
  sleep 1
done
log "server $(kubectl --kubeconfig "$kubeconfig" version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])'), $ready Ready nodes"
echo "$kubeconfig"
