#!/usr/bin/env bash
# Builds (cached) and imports images into the real node's containerd, so pods
# can run them with imagePullPolicy: Never/IfNotPresent; nothing is pulled.
# Usage: node-images.sh [pause] [model-server] (default: both). Prints one
# image ref per line, in the order asked. Needs the node up (node-up.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
name=${SLIPWAY_CLUSTER_NAME:-slipway}
cache=${SLIPWAY_CACHE_DIR:-$HOME/.cache/slipway}
# shellcheck source=node-lib.sh
. "$here/node-lib.sh"
[ $# -gt 0 ] || set -- pause model-server
[ -S "$node_sock" ] || { node_log "no real node for cluster '$name' (run up.sh with SLIPWAY_REAL_NODE=1)"; exit 1; }
ctr_() { ctr --address "$node_sock" -n k8s.io "$@"; }
for image in "$@"; do
  read -r ref archive < <("$here/../images/build.sh" "$image" | tail -n 1)
  if [ -z "$(ctr_ images ls -q "name==$ref")" ]; then
    t=$SECONDS
    ctr_ images import "$archive" >/dev/null
    node_log "imported $ref in $((SECONDS - t))s"
  fi
  echo "$ref"
done
