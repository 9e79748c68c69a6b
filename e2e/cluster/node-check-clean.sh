#!/usr/bin/env bash
# Checks that nothing the real node created is left on the machine after
# node-down.sh: processes, mounts, the bridge and its veths, nftables tables,
# iptables chains, kernel settings, cgroups, host paths, the state dir and the
# Node object. Compares with what node-up.sh recorded before it started.
# Prints each leftover and exits 1 if there is any; exits 0 and forgets the
# record when the machine is as it was.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
name=${SLIPWAY_CLUSTER_NAME:-slipway}
cache=${SLIPWAY_CACHE_DIR:-$HOME/.cache/slipway}
# shellcheck source=node-lib.sh
. "$here/node-lib.sh"
kubeconfig="$(kube_cluster_dir)/slipway.kubeconfig"
left=()
before_has() { [ -f "$node_before" ] && grep -qxF "$1" "$node_before"; }

pids=$(node_pids | sort -u | grep -vx "$$" || true)
for pid in $pids; do
  kill -0 "$pid" 2>/dev/null && left+=("process $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-120)")
done
while IFS= read -r m; do [ -n "$m" ] && left+=("mount $m"); done < <(node_mounts)
ip link show "$node_bridge" >/dev/null 2>&1 && left+=("bridge $node_bridge")
for veth in $(ip -o link show master "$node_bridge" 2>/dev/null | awk -F': ' '{print $2}'); do left+=("veth $veth"); done
ip -4 -o addr show | awk '{print $4}' | grep -q "^$node_ip/" && left+=("address $node_ip")
nft list table inet "$node_nft_table" >/dev/null 2>&1 && left+=("nftables table inet $node_nft_table")
for t in "${node_kp_tables[@]}"; do
  before_has "nft $t" || ! nft list table $t >/dev/null 2>&1 || left+=("nftables table $t")
done
if [ -f "$node_before" ]; then
  # Tables that appeared while the node ran (e.g. from iptables-nft) and are still there.
  while read -r t; do
    [ -n "$t" ] && ! before_has "nft $t" && nft list table $t 2>/dev/null | grep -c -- '-j KUBE\|KUBE-' >/dev/null &&
      left+=("nftables table $t with KUBE chains")
  done < <(nft_tables)
  if command -v iptables-save >/dev/null 2>&1; then
    for c in "${node_ipt_chains[@]}"; do
      before_has "ipt4 $c" || ! iptables-save 2>/dev/null | grep -c "^:$c " >/dev/null || left+=("iptables chain $c")
      before_has "ipt6 $c" || ! ip6tables-save 2>/dev/null | grep -c "^:$c " >/dev/null || left+=("ip6tables chain $c")
    done
  fi
  while read -r kind key value; do
    [ "$kind" = sysctl ] && [ "$value" != - ] || continue
    f=$(sysctl_path "$key")
    now=$(tr '\t' ' ' <"$f" 2>/dev/null)
    [ "$now" = "$value" ] || left+=("sysctl $key = $now (was $value)")
  done <"$node_before"
  for p in "${node_host_paths[@]}"; do
    before_has "path $p" || [ ! -e "$p" ] || left+=("path $p (created while the node ran)")
  done
else
  left+=("no record $node_before of the machine before the node (was node-up.sh run?)")
fi
for r in $(node_cgroup_roots); do [ -d "$r/$node_cgroup" ] && left+=("cgroup $r/$node_cgroup"); done
[ -e "$node_state" ] && left+=("state dir $node_state")
bin=$(ls -d "$cache"/bin/k8s-"$KUBE_VERSION"-* 2>/dev/null | head -n 1)
if [ -n "$bin" ] && [ -f "$kubeconfig" ] &&
  "$bin/kubectl" --kubeconfig "$kubeconfig" --request-timeout=5s get node "$node_name" >/dev/null 2>&1; then
  left+=("Node object $node_name")
fi

if [ ${#left[@]} -gt 0 ]; then
  node_log "the real node left ${#left[@]} thing(s) on the machine:"
  printf '  %s\n' "${left[@]}" >&2
  exit 1
fi
rm -f "$node_before"
node_log "clean: nothing the real node created remains"
