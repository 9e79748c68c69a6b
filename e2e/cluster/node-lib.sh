# shellcheck shell=bash
# Names and paths shared by node-up.sh, node-down.sh and node-check-clean.sh:
# everything the real node creates on the machine is named here, so the
# teardown and the check remove and look for exactly these and nothing else.
# Sourced after versions.env, with $name (cluster) and $cache set.

node_name="$name-node"
node_state="$cache/node/$name"            # all of the node's state (removed by node-down)
node_before="$cache/node/$name.before"    # what the machine looked like before (kept for the check)
node_logs="$node_state/logs"
node_id=$(printf '%s' "$name" | sha256sum | cut -c1-8)
node_bridge="slw$node_id"                 # at most 15 characters
# A /24 per cluster name, so two machines' habits don't matter; override if it clashes.
node_pod_cidr=${SLIPWAY_NODE_POD_CIDR:-10.244.$((16#${node_id:0:2} % 200 + 20)).0/24}
node_net=${node_pod_cidr%.*/*}            # e.g. 10.244.57
node_ip="$node_net.1"                     # the bridge's address is the node's InternalIP
# The API server's Service range (kube-apiserver's default; kwokctl sets none).
node_service_cidr=${SLIPWAY_SERVICE_CIDR:-10.0.0.0/24}
node_nft_table="slipway_node_$node_id"    # our own table (inet family): pods stay on this machine
node_cgroup="slipway-$name"               # kubelet's cgroupRoot, in every mounted hierarchy
node_sock="$node_state/containerd/containerd.sock"
# The kube-proxy tables (nftables mode) are named by kube-proxy itself, so one
# real node per machine: node-up refuses to start if they already exist.
node_kp_tables=("ip kube-proxy" "ip6 kube-proxy")
# Kernel settings kubelet, the CNI bridge plugin or kube-proxy may change.
node_sysctls=(
  kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes
  net.ipv4.ip_forward net.ipv4.conf.all.forwarding net.ipv4.conf.default.forwarding
  net.ipv6.conf.all.forwarding net.ipv4.conf.all.route_localnet
  net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
  net.netfilter.nf_conntrack_tcp_timeout_close_wait net.netfilter.nf_conntrack_tcp_be_liberal
)
# Host paths the node's programs create on their own outside the state dir
# (kubelet's container log links, containerd's shim sockets); removed on
# teardown if they did not exist before and hold nothing else.
node_host_paths=(
  /var/log/containers /var/log/pods /var/lib/kubelet /var/lib/containerd /opt/containerd
  /run/containerd /var/run/netns /run/netns /var/lib/cni /etc/cni /run/runc /run/kubernetes
)
# iptables chains kubelet or kube-proxy could add (kubelet's are switched off
# with makeIPTablesUtilChains: false; checked all the same).
node_ipt_chains=(KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-PROXY-CANARY KUBE-IPTABLES-HINT KUBE-SERVICES KUBE-FORWARD)

node_log() { printf '[real-node %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Mounted cgroup hierarchies (v1 controllers, name=systemd, unified).
node_cgroup_roots() {
  awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts | sort -u
}

sysctl_path() { echo "/proc/sys/${1//.//}"; }

# Pids whose command line mentions our state dir (our daemons and shims), or
# that live in our cgroup tree (containers). Never matched by program name.
node_pids() {
  local p
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF "$node_state/"; then echo "${p#/proc/}"; fi
  done
  local r
  for r in $(node_cgroup_roots); do
    [ -d "$r/$node_cgroup" ] && find "$r/$node_cgroup" -name cgroup.procs -exec cat {} + 2>/dev/null
  done
  true
}

# Mount points at or below the state dir, deepest first.
node_mounts() {
  awk -v s="$node_state" '{ gsub(/\\040/, " ", $2); if ($2 == s || index($2, s "/") == 1) print $2 }' /proc/self/mounts |
    awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-
}

nft_tables() { nft list tables 2>/dev/null | sed 's/^table //' | sort; }

kube_cluster_dir() { echo "$cache/kwok/clusters/$name"; }
