#!/usr/bin/env bash
# Joins a real node to the running local cluster (up.sh calls this when
# SLIPWAY_REAL_NODE=1): Debian's containerd and runc, a CNI bridge without
# masquerading, kubelet and kube-proxy (nftables mode) built from the same
# pinned module as the control plane, and the locally built images (pause,
# model-server) imported into containerd. Needs root. All state lives under
# ~/.cache/slipway/node/<cluster>; node-down.sh removes it and everything the
# node changed on the machine. Idempotent: a healthy node is reused.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
name=${SLIPWAY_CLUSTER_NAME:-slipway}
cache=${SLIPWAY_CACHE_DIR:-$HOME/.cache/slipway}
export KWOK_WORKDIR="$cache/kwok"
# shellcheck source=node-lib.sh
. "$here/node-lib.sh"
kubeconfig="$(kube_cluster_dir)/slipway.kubeconfig"
start_all=$SECONDS

[ "$(id -u)" -eq 0 ] || { node_log "the real node needs root (containers, network, cgroups)"; exit 1; }
[ -f "$kubeconfig" ] || { node_log "no cluster '$name': run up.sh first"; exit 1; }
# Only a cluster made for it keeps kwok's hands off a real node (see up.sh).
[ -f "$(kube_cluster_dir)/slipway-real-node" ] ||
  { node_log "cluster '$name' was not made for a real node: run up.sh with SLIPWAY_REAL_NODE=1"; exit 1; }

bin=$(SLIPWAY_REAL_NODE=1 "$here/build.sh" cluster | tail -n 1)
export PATH="$bin:$PATH"
kc() { kubectl --kubeconfig "$kubeconfig" --request-timeout=10s "$@"; }

alive() { [ -f "$node_state/$1.pid" ] && kill -0 "$(cat "$node_state/$1.pid")" 2>/dev/null; }

if alive containerd && alive kubelet && alive kube-proxy &&
  kc get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True; then
  node_log "reusing real node $node_name ($node_ip)"
  echo "$node_name"
  exit 0
fi
if [ -e "$node_state" ] || [ -e "$node_before" ] || ip link show "$node_bridge" >/dev/null 2>&1; then
  node_log "a previous real node left state: tearing it down first"
  "$here/node-down.sh"
fi

# --- packages (Debian's; installed once, like e2e/prometheus/ensure.sh) -------
missing=()
command -v containerd >/dev/null 2>&1 || missing+=(containerd)
command -v runc >/dev/null 2>&1 || missing+=(runc)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
if [ ${#missing[@]} -gt 0 ]; then
  node_log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; }
fi

# --- images (built locally, never pulled; imported once containerd runs) -------
read -r pause_ref _ < <("$here/../images/build.sh" pause | tail -n 1)
"$here/../images/build.sh" model-server >/dev/null

# --- refuse what would collide -------------------------------------------------
for t in "${node_kp_tables[@]}"; do
  if nft list table $t >/dev/null 2>&1; then
    node_log "nftables table '$t' exists: another kube-proxy runs on this machine (one real node per machine)"
    exit 1
  fi
done
if ip -4 -o addr show | awk '{print $4}' | grep -q "^$node_net\."; then
  node_log "$node_pod_cidr is already used on this machine: set SLIPWAY_NODE_POD_CIDR"
  exit 1
fi

# --- what the machine looks like before: node-down.sh restores it ---------------
node_log "recording the machine's state in $node_before"
mkdir -p "$node_state" "$node_logs"
{
  for s in "${node_sysctls[@]}"; do
    f=$(sysctl_path "$s")
    if [ -r "$f" ]; then echo "sysctl $s $(tr '\t' ' ' <"$f")"; else echo "sysctl $s -"; fi
  done
  for p in "${node_host_paths[@]}"; do [ -e "$p" ] && echo "path $p"; done
  nft_tables | sed 's/^/nft /'
  if command -v iptables-save >/dev/null 2>&1; then
    for c in "${node_ipt_chains[@]}"; do
      iptables-save 2>/dev/null | grep -q "^:$c " && echo "ipt4 $c"
      ip6tables-save 2>/dev/null | grep -q "^:$c " && echo "ipt6 $c"
    done
  fi
  true
} >"$node_before.tmp"
mv "$node_before.tmp" "$node_before"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kubelet_port=$(free_port); kubelet_healthz=$(free_port); kp_healthz=$(free_port); kp_metrics=$(free_port)

# --- network: our bridge (the node's address) and our own nftables table --------
node_log "bridge $node_bridge $node_ip/${node_pod_cidr#*/}, pods in $node_pod_cidr"
ip link add "$node_bridge" type bridge
ip addr add "$node_ip/${node_pod_cidr#*/}" dev "$node_bridge"
ip link set "$node_bridge" up
# Service IPs kube-proxy has not programmed yet go to our bridge (and nowhere),
# never to the default route. The route goes away with the bridge.
ip route add "$node_service_cidr" dev "$node_bridge"
# Pods reach this machine and each other (directly or through Service IPs) and
# nothing else: without masquerading their packets could not come back anyway,
# and none may leave the machine at all.
nft -f - <<EOF
table inet $node_nft_table {
  chain forward {
    type filter hook forward priority filter + 10; policy accept;
    iifname "$node_bridge" oifname != "$node_bridge" drop
  }
}
EOF

# Pod -> Service IP -> pod is routed through this machine (node-down restores it).
echo 1 >/proc/sys/net/ipv4/ip_forward

# --- cgroups: kubelet's root, one per cluster ----------------------------------
for r in $(node_cgroup_roots); do mkdir -p "$r/$node_cgroup"; done

# --- containerd ----------------------------------------------------------------
mkdir -p "$node_state/containerd" "$node_state/cni/net.d" "$node_state/cni/ipam"
cat >"$node_state/containerd/config.toml" <<EOF
version = 2
root = "$node_state/containerd/root"
state = "$node_state/containerd/state"
oom_score = 0
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$node_sock"
[ttrpc]
  address = "$node_sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_ref"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$node_state/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node_state/cni/net.d"
    max_conf_num = 1
EOF
cat >"$node_state/cni/net.d/10-slipway.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "slipway",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$node_bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$node_state/cni/ipam",
        "ranges": [[{"subnet": "$node_pod_cidr", "gateway": "$node_ip"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "loopback"}
  ]
}
EOF

start_daemon() {  # name, command...: detached, logged, pid recorded
  local n=$1; shift
  setsid "$@" >>"$node_logs/$n.log" 2>&1 </dev/null &
  echo $! >"$node_state/$n.pid"
}

wait_for() {  # seconds, what, command...
  local limit=$1 what=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then
      node_log "timed out after ${limit}s waiting for $what; logs in $node_logs"
      tail -n 20 "$node_logs"/*.log >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

node_log "starting containerd ($(containerd --version | awk '{print $3}'))"
# Registry traffic goes to a closed local port: no image is ever pulled, and an
# image that is not imported fails fast instead of reaching for the network.
start_daemon containerd env HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 \
  http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 NO_PROXY= no_proxy= \
  containerd --config "$node_state/containerd/config.toml"
wait_for 30 containerd ctr --address "$node_sock" version
"$here/node-images.sh" pause model-server >/dev/null

# --- kubelet -------------------------------------------------------------------
ca="$(kube_cluster_dir)/pki/ca.crt"
mkdir -p "$node_state/kubelet" "$node_state/pod-logs"
cat >"$node_state/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$node_sock
cgroupDriver: cgroupfs
cgroupRoot: /$node_cgroup
failCgroupV1: false
failSwapOn: false
address: $node_ip
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_healthz
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $ca}
authorization:
  mode: Webhook
makeIPTablesUtilChains: false
resolvConf: ""
podLogsDir: $node_state/pod-logs
podCIDR: $node_pod_cidr
maxPods: 60
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
evictionPressureTransitionPeriod: 5s
nodeStatusReportFrequency: 10s
EOF
node_log "starting kubelet ($node_name at $node_ip:$kubelet_port)"
start_daemon kubelet kubelet --config "$node_state/kubelet.yaml" --kubeconfig "$kubeconfig" \
  --root-dir "$node_state/kubelet" --cert-dir "$node_state/kubelet/pki" --hostname-override "$node_name" --node-ip "$node_ip" \
  --node-labels "slipway.dev/node=real" --v=1
node_ready() {
  kc get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True
}
wait_for 90 "node $node_name Ready" node_ready

# --- kube-proxy (nftables) -----------------------------------------------------
cat >"$node_state/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {kubeconfig: $kubeconfig}
hostnameOverride: $node_name
bindAddress: $node_ip
clusterCIDR: $node_pod_cidr
healthzBindAddress: 127.0.0.1:$kp_healthz
metricsBindAddress: 127.0.0.1:$kp_metrics
nodePortAddresses: ["$node_ip/32"]
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
node_log "starting kube-proxy (nftables mode)"
start_daemon kube-proxy kube-proxy --config "$node_state/kube-proxy.yaml" --v=1
kp_ready() { curl -fsS "http://127.0.0.1:$kp_healthz/healthz" && nft list table ip kube-proxy; }
wait_for 60 "kube-proxy healthy" kp_ready

node_log "real node $node_name Ready in $((SECONDS - start_all))s"
echo "$node_name"
