#!/usr/bin/env bash
# Make a `prometheus` binary available for tests, from Debian's package.
#
# Why Debian's package: it is the one registry this project's machines reach that
# ships a Prometheus server, and apt installs it the same way on a developer's
# machine and in CI. Tests start their own instance on 127.0.0.1 with a throw-away
# config and TSDB, so the package's own service must not run: if the install
# started it (it listens on 0.0.0.0:9090), it is stopped and disabled here.
#
# Idempotent and fast when already installed. Progress goes to stderr; the last
# line on stdout is the binary's path, so callers can do
#   PROMETHEUS=$(e2e/prometheus/ensure.sh | tail -n1)
set -euo pipefail

log() { echo "ensure-prometheus: $*" >&2; }

# Stop the Debian service if the package started one (a real init system, or a
# container without policy-rc.d). Only processes of the package's own service
# user are touched: those were started by the install, never by a test.
stop_package_service() {
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
  if [ -x /etc/init.d/prometheus ]; then
    /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    command -v update-rc.d >/dev/null 2>&1 && update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
  local pids
  pids=$(pgrep -u prometheus -x prometheus 2>/dev/null || true)
  if [ -n "$pids" ]; then
    log "stopping the package's prometheus service (pids: $(echo "$pids" | tr '\n' ' '))"
    # shellcheck disable=SC2086
    kill $pids 2>/dev/null || true
    for _ in $(seq 1 50); do
      pgrep -u prometheus -x prometheus >/dev/null 2>&1 || break
      sleep 0.1
    done
  fi
}

bin=""
if [ -n "${PROMETHEUS:-}" ] && [ -x "${PROMETHEUS}" ]; then
  bin="${PROMETHEUS}"          # an explicit binary wins (e.g. a newer upstream build)
elif command -v prometheus >/dev/null 2>&1; then
  bin=$(command -v prometheus)
fi

if [ -z "$bin" ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    log "no prometheus binary and no apt-get: install Prometheus and set PROMETHEUS=/path/to/prometheus"
    exit 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    log "no prometheus binary and not root: run 'sudo apt-get install prometheus' or set PROMETHEUS"
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-cache show prometheus >/dev/null 2>&1; then
    log "apt-get update (package lists do not know prometheus yet)"
    apt-get update -qq >&2
  fi
  log "apt-get install prometheus"
  if ! apt-get install -y -qq --no-install-recommends prometheus >&2; then
    log "install failed; refreshing package lists and trying once more"
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends prometheus >&2
  fi
  stop_package_service
  bin=$(command -v prometheus)
else
  stop_package_service
fi

version=$("$bin" --version 2>&1 | head -n1)
log "using $bin ($version)"
echo "$bin"
