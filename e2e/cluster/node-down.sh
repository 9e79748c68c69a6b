#!/usr/bin/env bash
# Stops the real node (node-up.sh) and puts the machine back as node-up found
# it: pods and their network namespaces, kubelet, kube-proxy, containerd and
# its shims, mounts, the bridge, the nftables tables, kernel settings, cgroups,
# host paths, the Node object, the state dir. Removes only what this cluster's
# node created. Safe to run when no node is up. down.sh calls it, then
# node-check-clean.sh.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
name=${SLIPWAY_CLUSTER_NAME:-slipway}
cache=${SLIPWAY_CACHE_DIR:-$HOME/.cache/slipway}
# shellcheck source=node-lib.sh
. "$here/node-lib.sh"
kubeconfig="$(kube_cluster_dir)/slipway.kubeconfig"

if [ ! -e "$node_state" ] && [ ! -e "$node_before" ] && ! ip link show "$node_bridge" >/dev/null 2>&1; then
  node_log "no real node for cluster '$name'"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { node_log "tearing down the real node needs root"; exit 1; }
start=$SECONDS
bin=$(ls -d "$cache"/bin/k8s-"$KUBE_VERSION"-* 2>/dev/null | head -n 1)
kc() { "$bin/kubectl" --kubeconfig "$kubeconfig" --request-timeout=10s "$@"; }
api_up() { [ -n "$bin" ] && [ -f "$kubeconfig" ] && kc get --raw /readyz >/dev/null 2>&1; }
alive() { [ -f "$node_state/$1.pid" ] && kill -0 "$(cat "$node_state/$1.pid")" 2>/dev/null; }

stop_daemon() {  # name: TERM, then KILL after 10 s
  local n=$1 pid
  [ -f "$node_state/$n.pid" ] || return 0
  pid=$(cat "$node_state/$n.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$node_state/$n.pid"
}

# 1. Drain while kubelet still runs, so it stops the pods and the CNI plugin
#    removes their network namespaces and addresses.
if api_up && kc get node "$node_name" >/dev/null 2>&1; then
  kc cordon "$node_name" >/dev/null 2>&1
  if alive kubelet; then
    kc delete pods -A --field-selector "spec.nodeName=$node_name" --grace-period=2 --wait=false >/dev/null 2>&1
    for _ in $(seq 1 150); do
      [ -z "$(kc get pods -A --field-selector "spec.nodeName=$node_name" -o name 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
fi

# 2. kube-proxy and kubelet.
stop_daemon kube-proxy
stop_daemon kubelet

# 3. Containers kubelet did not get to stop: kill them through containerd.
if alive containerd; then
  ctr_() { ctr --address "$node_sock" -n k8s.io "$@"; }
  for task in $(ctr_ tasks ls -q 2>/dev/null); do
    ctr_ tasks kill -s SIGKILL "$task" >/dev/null 2>&1
  done
  sleep 0.5
  for task in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$task" >/dev/null 2>&1; done
fi
stop_daemon containerd

# 4. Whatever still runs from our state dir or in our cgroups (shims, stray
#    container processes): by pid, found by path or cgroup, never by name.
for _ in 1 2 3; do
  pids=$(node_pids | sort -u | grep -vx "$$" || true)
  [ -z "$pids" ] && break
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null
  sleep 0.3
done

# 5. Mounts under the state dir (rootfs overlays, shm, netns, volumes), deepest first.
for _ in 1 2 3; do
  mounts=$(node_mounts)
  [ -z "$mounts" ] && break
  while IFS= read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done <<<"$mounts"
done

# 6. The Node object (kubelet is gone, so it would only turn NotReady).
if api_up; then kc delete node "$node_name" --ignore-not-found --wait=false >/dev/null 2>&1; fi

# 7. Network: veths left on our bridge, the bridge, our nftables tables.
for veth in $(ip -o link show master "$node_bridge" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
  ip link delete "$veth" 2>/dev/null
done
ip link delete "$node_bridge" 2>/dev/null
nft delete table inet "$node_nft_table" 2>/dev/null
before_has() { [ -f "$node_before" ] && grep -qxF "$1" "$node_before"; }
for t in "${node_kp_tables[@]}"; do
  before_has "nft $t" || nft delete table $t 2>/dev/null
done
if command -v iptables >/dev/null 2>&1 && [ -f "$node_before" ]; then
  for c in "${node_ipt_chains[@]}"; do
    for fam in 4 6; do
      before_has "ipt$fam $c" && continue
      ipt=iptables; [ $fam = 6 ] && ipt=ip6tables
      for table in filter nat mangle; do
        if $ipt -t $table -S "$c" >/dev/null 2>&1; then
          # Jumps into the chain first, then the chain itself.
          $ipt -t $table -S 2>/dev/null | grep -E -- "-j $c( |$)" | sed 's/^-A/-D/' |
            while read -r rule; do eval "$ipt -t $table $rule" 2>/dev/null; done
          $ipt -t $table -F "$c" 2>/dev/null; $ipt -t $table -X "$c" 2>/dev/null
        fi
      done
    done
  done
fi

# 8. Kernel settings back to what they were.
if [ -f "$node_before" ]; then
  while read -r kind key value; do
    [ "$kind" = sysctl ] && [ "$value" != - ] || continue
    f=$(sysctl_path "$key")
    [ -w "$f" ] && [ "$(tr '\t' ' ' <"$f")" != "$value" ] && echo "$value" >"$f"
  done <"$node_before"
fi

# 9. Cgroups (deepest first; they are empty now).
for r in $(node_cgroup_roots); do
  [ -d "$r/$node_cgroup" ] && find "$r/$node_cgroup" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# 10. Host paths our programs created: only if they were not there before and
#     hold nothing but what is ours (empty dirs, links into our state dir).
if [ -f "$node_before" ]; then
  for p in "${node_host_paths[@]}"; do
    before_has "path $p" && continue
    [ -e "$p" ] || continue
    case "$p" in
      # kubelet's own hard-coded paths (device plugin socket, log links): whole.
      /var/lib/kubelet | /var/log/containers | /var/log/pods) rm -rf --one-file-system "$p"; continue ;;
    esac
    find "$p" -type l -lname "$node_state/*" -delete 2>/dev/null
    find "$p" -depth -type d -empty -delete 2>/dev/null
  done
fi

# 11. The state dir (no mounts left in it, so one file system only).
[ -z "$(node_mounts)" ] && rm -rf --one-file-system "$node_state"
node_log "real node $node_name removed in $((SECONDS - start))s"
exit 0
