#!/usr/bin/env bash
# `make demo`: everything is set up by the Python script (cluster, CRDs, Prometheus, operator).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m e2e.demo
