#!/usr/bin/env bash
# Stops the local test cluster and removes its state (binaries stay cached).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
name=${SLIPWAY_CLUSTER_NAME:-slipway}
cache=${SLIPWAY_CACHE_DIR:-$HOME/.cache/slipway}
export KWOK_WORKDIR="$cache/kwok"
bin=$("$here/build.sh" cluster | tail -n 1)
# The real node first, while the API server still runs (clusters made with
# SLIPWAY_REAL_NODE=1; nothing happens otherwise).
real_node=0
if [ -e "$cache/node/$name" ] || [ -e "$cache/node/$name.before" ]; then
  real_node=1
  "$here/node-down.sh"
fi
if "$bin/kwokctl" get clusters 2>/dev/null | grep -qx "$name"; then
  "$bin/kwokctl" delete cluster --name "$name"
else
  echo "no cluster '$name' to delete" >&2
fi
# Control-plane processes still running from the cluster dir (seen once when
# kwokctl did not list the cluster): stop them by pid before removing the dir.
strays=$(for p in /proc/[0-9]*; do
  tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF "$KWOK_WORKDIR/clusters/$name/bin/" && echo "${p#/proc/}"
done | grep -vx "$$" || true)
if [ -n "$strays" ]; then
  echo "stopping processes left from cluster '$name': $(echo $strays)" >&2
  # shellcheck disable=SC2086
  kill $strays 2>/dev/null || true
  sleep 5
  # shellcheck disable=SC2086
  kill -KILL $strays 2>/dev/null || true
fi
rm -rf "$KWOK_WORKDIR/clusters/$name" "$cache/node/$name.kwokctl.yaml"
# Then fail loudly if the real node left anything on the machine.
if [ "$real_node" = 1 ]; then "$here/node-check-clean.sh"; fi
