#!/usr/bin/env bash
# Starts (or reuses) the local test cluster: a real kube-apiserver, etcd,
# controller-manager and scheduler built from source (build.sh), run by
# kwokctl's binary runtime with RBAC on, plus fake kwok nodes whose pods
# become Ready. Prints the kubeconfig path as its last line.
# SLIPWAY_REAL_NODE=1 adds a real node beside them (node-up.sh: kubelet,
# containerd, kube-proxy, locally built images) and taints the fake nodes
# (kwok.x-k8s.io/node=fake:NoSchedule) so pods land on the real one unless
# they tolerate that taint. Default off: the cluster is exactly as before.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
name=${SLIPWAY_CLUSTER_NAME:-slipway}
nodes=${SLIPWAY_CLUSTER_NODES:-2}
cache=${SLIPWAY_CACHE_DIR:-$HOME/.cache/slipway}
export KWOK_WORKDIR="$cache/kwok"
export KWOK_KUBE_VERSION=$KUBE_VERSION
kubeconfig="$KWOK_WORKDIR/clusters/$name/slipway.kubeconfig"
real_node=${SLIPWAY_REAL_NODE:-0}
# Marks a cluster created ready for a real node (kwok manages only fake nodes).
real_marker="$KWOK_WORKDIR/clusters/$name/slipway-real-node"

log() { printf '[cluster-up %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

bin=$("$here/build.sh" cluster | tail -n 1)
export PATH="$bin:$PATH"

healthy() {
  [ -f "$kubeconfig" ] && kubectl --kubeconfig "$kubeconfig" --request-timeout=5s get --raw /readyz >/dev/null 2>&1
}

create_args=() scale_args=()
if [ "$real_node" = 1 ]; then
  # The API server reaches kubelets by InternalIP here, so the fake nodes get
  # loopback addresses instead of kwok's default documentation range (which
  # can be a real neighbour of this machine): nothing is ever dialled outside.
  scale_args=(--param '.nodeIPs=["127.0.2.1"]')
  # shellcheck source=node-lib.sh
  . "$here/node-lib.sh"
  # kwok must not take over the real node, the API server must reach its
  # kubelet by IP with a client certificate (kubectl logs/exec), and in-cluster
  # clients need the Service IP of `kubernetes` and the node IP in its cert.
  pki="$KWOK_WORKDIR/clusters/$name/pki"
  kwok_config="$cache/node/$name.kwokctl.yaml"
  mkdir -p "$(dirname "$kwok_config")"
  cat >"$kwok_config" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  kubeApiserverCertSANs: ["10.0.0.1", "$node_ip"]
componentsPatches:
- name: kube-apiserver
  extraArgs:
  - {key: kubelet-preferred-address-types, value: InternalIP}
  - {key: kubelet-client-certificate, value: $pki/admin.crt}
  - {key: kubelet-client-key, value: $pki/admin.key}
- name: kwok-controller
  extraArgs:
  - {key: manage-all-nodes, value: "false", override: true}
  - {key: manage-nodes-with-annotation-selector, value: kwok.x-k8s.io/node=fake}
EOF
  create_args=(--config "$kwok_config")
fi

# A cluster is reused only if it was made for the same SLIPWAY_REAL_NODE setting.
made_for=0
[ -f "$real_marker" ] && made_for=1
if healthy && [ "$made_for" = "$real_node" ]; then
  log "reusing running cluster '$name'"
else
  if healthy; then
    log "cluster '$name' was made with SLIPWAY_REAL_NODE=$made_for, not $real_node: recreating it"
    "$here/node-down.sh"
    if [ -e "$cache/node/$name.before" ]; then "$here/node-check-clean.sh"; fi
    kwokctl delete cluster --name "$name" >&2
    rm -rf "$KWOK_WORKDIR/clusters/$name"  # its etcd data too: start from nothing
  fi
  if kwokctl get clusters 2>/dev/null | grep -qx "$name"; then
    log "cluster '$name' exists but is not healthy: recreating it"
    kwokctl delete cluster --name "$name" >&2 || true
  fi
  log "creating cluster '$name' (kube $KUBE_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION)"
  mkdir -p "$(dirname "$kubeconfig")"
  kwokctl create cluster --name "$name" --runtime binary ${create_args[@]+"${create_args[@]}"} \
    --kube-authorization=true --kube-admission=true \
    --kube-apiserver-binary "$bin/kube-apiserver" \
    --kube-controller-manager-binary "$bin/kube-controller-manager" \
    --kube-scheduler-binary "$bin/kube-scheduler" \
    --kwok-controller-binary "$bin/kwok" \
    --etcd-binary "$bin/etcd" \
    --kubeconfig "$kubeconfig" \
    --wait 120s >&2
  if [ "$real_node" = 1 ]; then touch "$real_marker"; fi
fi

have=$(kubectl --kubeconfig "$kubeconfig" get nodes -l '!slipway.dev/node' --no-headers 2>/dev/null | wc -l)
if [ "$have" -lt "$nodes" ]; then
  log "scaling fake nodes to $nodes"
  kwokctl scale node --name "$name" --replicas "$nodes" ${scale_args[@]+"${scale_args[@]}"} >&2
fi
log "waiting for $nodes Ready nodes"
for _ in $(seq 1 60); do
  ready=$(kubectl --kubeconfig "$kubeconfig" get nodes --no-headers 2>/dev/null | grep -c " Ready " || true)
  [ "$ready" -ge "$nodes" ] && break
  sleep 1
done
if [ "$real_node" = 1 ]; then
  "$here/node-up.sh" >/dev/null
  kubectl --kubeconfig "$kubeconfig" taint nodes -l type=kwok kwok.x-k8s.io/node=fake:NoSchedule --overwrite >/dev/null
  log "real node $node_name Ready; fake nodes tainted kwok.x-k8s.io/node=fake:NoSchedule"
fi
log "server $(kubectl --kubeconfig "$kubeconfig" version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])'), $ready Ready nodes"
echo "$kubeconfig"
