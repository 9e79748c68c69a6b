#!/usr/bin/env bash
# Builds a container image for the local real node without any registry and
# prints "<image ref> <OCI archive path>" as its last line. Images:
#   pause         the pod sandbox: a static C program (pause/pause.c), nothing else
#   model-server  examples/model-server on a debootstrap'd minimal Debian root
#                 with python3 and the pinned wheels of its requirements.txt
# Each image follows the steps of its Containerfile (the recipe for people with
# a registry), is written as an OCI archive (oci.py) and cached under
# ~/.cache/slipway/images keyed by a hash of its inputs, so a second run builds
# nothing. Importing into the node's containerd is node-up.sh's job.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${SLIPWAY_CACHE_DIR:-$HOME/.cache/slipway}/images
name=${1:?usage: build.sh pause|model-server}
# The Debian release of the model server's root (its python3 must match the wheels' ABI).
SUITE=bookworm
PYTHON_ABI=cp311
PYTHON_SITE=/usr/local/lib/python3.11/dist-packages
# Bump when the way the base root is made changes (the key cannot see it otherwise).
BASE_RECIPE=1

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

hash_of() {  # files and strings -> short hex key
  { for x in "$@"; do if [ -f "$x" ]; then sha256sum "$x" | cut -d' ' -f1; else echo "$x"; fi; done; } |
    sha256sum | cut -c1-16
}

need() {  # command, Debian package: apt-get install it if missing
  command -v "$1" >/dev/null 2>&1 && return
  [ "$(id -u)" -eq 0 ] || { log "need $1: run 'sudo apt-get install $2'"; exit 1; }
  log "apt-get install $2"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "$2" >&2 ||
    { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends "$2" >&2; }
}

debian_mirror() {  # the machine's own configured Debian mirror (never a fixed host)
  if [ -n "${SLIPWAY_DEBIAN_MIRROR:-}" ]; then echo "$SLIPWAY_DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)
  [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
    awk '{for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' | grep -v security | head -n1 || true)
  [ -n "$uri" ] || { log "no Debian mirror in /etc/apt sources; set SLIPWAY_DEBIAN_MIRROR"; exit 1; }
  echo "$uri"
}

# Writes the layer tar $2 of directory $1 (numeric owners, sorted names).
layer_tar() {
  tar --numeric-owner --sort=name --xattrs -C "$1" -cf "$2.tmp" . && mv "$2.tmp" "$2"
}

finish() {  # ref, archive
  echo "$1" >"$(dirname "$2")/ref"
  echo "$1 $2"
}

build_pause() {
  local key dir ref start work
  key=$(hash_of "$here/pause/pause.c" "$here/pause/Containerfile" "$here/oci.py" "$(cc --version | head -n1)")
  dir="$cache/pause-$key"
  ref="localhost/slipway/pause:$key"
  if [ -f "$dir/image.oci.tar" ]; then finish "$ref" "$dir/image.oci.tar"; return; fi
  need cc gcc
  log "building pause image $ref"
  start=$SECONDS
  mkdir -p "$dir"
  work=$(mktemp -d)
  mkdir -p "$work/root"
  cc -static -Os -s -o "$work/root/pause" "$here/pause/pause.c"
  layer_tar "$work/root" "$work/layer.tar"
  python3 "$here/oci.py" --out "$dir/image.oci.tar" --ref "$ref" --layer "$work/layer.tar" \
    --entrypoint /pause --user 65535:65535
  rm -rf "$work"
  log "built pause image in $((SECONDS - start))s"
  finish "$ref" "$dir/image.oci.tar"
}

# The base layer: minimal Debian + python3 + the pinned wheels. Slow (debootstrap),
# so cached on its own: changing the server's code does not redo it.
base_layer() {  # -> path of the layer tar
  local req="$root/examples/model-server/requirements.txt" key dir start rootfs
  key=$(hash_of "$SUITE" "$PYTHON_ABI" "$BASE_RECIPE" "$req")
  dir="$cache/base-python-$key"
  if [ -f "$dir/layer.tar" ]; then echo "$dir/layer.tar"; return; fi
  need debootstrap debootstrap
  mkdir -p "$dir"
  rootfs="$dir/rootfs"
  rm -rf "$rootfs"
  start=$SECONDS
  log "debootstrap --variant=minbase $SUITE with python3 (about 1.5 minutes)"
  debootstrap --variant=minbase --include=python3 "$SUITE" "$rootfs" "$(debian_mirror)" >"$dir/debootstrap.log" 2>&1 ||
    { tail -n 20 "$dir/debootstrap.log" >&2; exit 1; }
  log "debootstrap done in $((SECONDS - start))s; installing wheels into $PYTHON_SITE"
  python3 -m pip install -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --implementation cp --python-version 3.11 --abi "$PYTHON_ABI" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --target "$rootfs$PYTHON_SITE" -r "$req" >&2
  # The root's own python3 must import them: a wrong wheel fails here, not in a pod.
  chroot "$rootfs" /usr/bin/python3 -c 'import numpy, prometheus_client' ||
    { log "the image's python3 cannot import the wheels"; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old
  # Device nodes come from the runtime, as in any image.
  find "$rootfs/dev" -mindepth 1 -delete
  layer_tar "$rootfs" "$dir/layer.tar"
  rm -rf "$rootfs"
  log "base layer ready in $((SECONDS - start))s ($(du -h "$dir/layer.tar" | cut -f1))"
  echo "$dir/layer.tar"
}

build_model_server() {
  local base key dir ref start work
  base=$(base_layer)
  key=$(hash_of "$(basename "$(dirname "$base")")" "$root/examples/model-server/model_server.py" \
    "$here/model-server/Containerfile" "$here/oci.py")
  dir="$cache/model-server-$key"
  ref="localhost/slipway/model-server:$key"
  if [ -f "$dir/image.oci.tar" ]; then finish "$ref" "$dir/image.oci.tar"; return; fi
  log "building model-server image $ref"
  start=$SECONDS
  mkdir -p "$dir"
  work=$(mktemp -d)
  install -D -m 0644 "$root/examples/model-server/model_server.py" "$work/root/app/model_server.py"
  layer_tar "$work/root" "$work/app.tar"
  python3 "$here/oci.py" --out "$dir/image.oci.tar" --ref "$ref" \
    --layer "$base" --layer "$work/app.tar" \
    --entrypoint python3 --entrypoint /app/model_server.py \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env MODEL_HOST=0.0.0.0 --env PORT=8080 --env PYTHONUNBUFFERED=1 \
    --workdir /app --user 65534:65534 --port 8080/tcp
  rm -rf "$work"
  log "built model-server image in $((SECONDS - start))s"
  finish "$ref" "$dir/image.oci.tar"
}

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9  # one build at a time: two would share the cache entries
case "$name" in
  pause) build_pause ;;
  model-server) build_model_server ;;
  *) echo "unknown image '$name' (pause, model-server)" >&2; exit 2 ;;
esac
