#!/usr/bin/env bash
# Stops the local test cluster and removes its state (binaries stay cached).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
name=${SLIPWAY_CLUSTER_NAME:-slipway}
cache=${SLIPWAY_CACHE_DIR:-$HOME/.cache/slipway}
export KWOK_WORKDIR="$cache/kwok"
bin=$("$here/build.sh" | tail -n 1)
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
rm -rf "$KWOK_WORKDIR/clusters/$name" "$cache/node/$name.kwokctl.yaml"
# Then fail loudly if the real node left anything on the machine.
if [ "$real_node" = 1 ]; then "$here/node-check-clean.sh"; fi
