#!/usr/bin/env bash
# Stops the local test cluster and removes its state (binaries stay cached).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
name=${SLIPWAY_CLUSTER_NAME:-slipway}
cache=${SLIPWAY_CACHE_DIR:-$HOME/.cache/slipway}
export KWOK_WORKDIR="$cache/kwok"
bin=$("$here/build.sh" | tail -n 1)
if "$bin/kwokctl" get clusters 2>/dev/null | grep -qx "$name"; then
  "$bin/kwokctl" delete cluster --name "$name"
else
  echo "no cluster '$name' to delete" >&2
fi
rm -rf "$KWOK_WORKDIR/clusters/$name"
