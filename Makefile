# Slipway developer entry points. `make demo` and `make test` do all their own
# set-up on a fresh machine: venv, binaries (built once, cached), cluster.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A real node (kubelet, containerd, kube-proxy, real pods) joins the local cluster whenever
# we run as root, as CI does; SLIPWAY_REAL_NODE=0 keeps only the fake kwok nodes.
export SLIPWAY_REAL_NODE ?= $(if $(filter 0,$(shell id -u)),1,0)
# The real Gateway API data plane (Envoy Gateway + Envoy on this machine, e2e/gateway/)
# goes with the real node; SLIPWAY_GATEWAY=0 turns it off, SLIPWAY_GATEWAY=1 on.
export SLIPWAY_GATEWAY ?= $(SLIPWAY_REAL_NODE)

.PHONY: help venv lint fmt crds unit integration test traffic demo cluster-up cluster-down bench lock clean

help:
	@echo "make demo         - everything set up, then an example rollout on the local cluster"
	@echo "make test         - lint, unit, integration and e2e tests (starts the local cluster)"
	@echo "make unit         - fast tests, no cluster"
	@echo "make cluster-up   - start or reuse the local cluster; prints its kubeconfig"
	@echo "make cluster-down - stop the local cluster and remove its state"

$(STAMP): pyproject.toml constraints.txt examples/model-server/requirements.txt
	@echo "[make] creating the virtual environment in $(VENV)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip
	@$(BIN)/pip install -q -c constraints.txt -e '.[dev]' -r examples/model-server/requirements.txt
	@touch $(STAMP)

venv: $(STAMP)

lint: venv
	@echo "[make] ruff, mypy, CRD drift"
	$(BIN)/ruff check operator tests e2e examples
	$(BIN)/ruff format --check operator tests e2e examples
	$(BIN)/mypy
	$(BIN)/slipway crds --check crds
	$(BIN)/slipway crds --check charts/slipway/crds

fmt: venv
	$(BIN)/ruff format operator tests e2e examples
	$(BIN)/ruff check --fix operator tests e2e examples

crds: venv
	$(BIN)/slipway crds --out-dir crds
	$(BIN)/slipway crds --out-dir charts/slipway/crds

unit: venv
	$(BIN)/pytest tests/unit -q

integration: venv traffic
	$(BIN)/pytest tests/integration -v

# The real traffic CRDs every test cluster gets (Gateway API, Envoy Gateway, Istio; from
# the Go module proxy, a few seconds once) and, with SLIPWAY_GATEWAY=1, the Envoy Gateway
# data plane (envoy-gateway built from its Go module, 4 to 8 minutes once; then cached).
traffic:
	@echo "[make] traffic CRDs: Gateway API, Envoy Gateway, Istio (fetched once, then cached)"
	@bash e2e/gateway/gateway.sh crds >/dev/null
	@bash e2e/gateway/gateway.sh istio-crds >/dev/null
	@if [ "$(SLIPWAY_GATEWAY)" = 1 ]; then \
	  echo "[make] Envoy Gateway data plane (SLIPWAY_GATEWAY=1; built once, then cached)"; \
	  bash e2e/gateway/gateway.sh prepare >/dev/null; \
	fi

test: lint
	@echo "[make] Prometheus (Debian package) and the cluster binaries (built once, then cached)"
	@bash e2e/prometheus/ensure.sh
	@bash e2e/cluster/build.sh
	@$(MAKE) --no-print-directory traffic
	@echo "[make] tests: e2e, integration (real API server, real Prometheus) and unit"
	$(BIN)/pytest tests -v -p no:cacheprovider

cluster-up:
	@bash e2e/cluster/up.sh

cluster-down:
	@bash e2e/cluster/down.sh

demo: venv
	@bash e2e/demo.sh

bench: venv
	$(BIN)/python -m e2e.bench
	@if [ "$$SLIPWAY_REAL_NODE" = 1 ]; then $(BIN)/python -m e2e.bench_traffic; \
	else echo "[make] bench-traffic skipped: it needs the real node (run as root)"; fi

.PHONY: bench-traffic
bench-traffic: venv
	$(BIN)/python -m e2e.bench_traffic

.PHONY: bench-decisions
bench-decisions: venv
	$(BIN)/python -m e2e.bench_decisions

.PHONY: bench-calibration
bench-calibration: venv
	$(BIN)/python -m e2e.bench_calibration

# Issue 13: false rollbacks under bursts of errors and power, with and without per-pod counts.
.PHONY: bench-bursts
bench-bursts: venv
	$(BIN)/python -m e2e.bench_bursts

# Issue 13: how often the first samplesNeeded/etaSeconds came true (target 90 %).
.PHONY: bench-eta
bench-eta: venv
	$(BIN)/python -m e2e.bench_eta

lock:
	rm -rf /tmp/slipway-lock && $(PYTHON) -m venv /tmp/slipway-lock
	/tmp/slipway-lock/bin/pip install -q -e '.[dev]'
	{ echo '# Exact versions CI and `make` install (pip install -c constraints.txt). Refresh with `make lock`.'; \
	  /tmp/slipway-lock/bin/pip freeze | grep -v '^-e'; } > constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
