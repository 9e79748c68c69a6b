"""The operator's own Prometheus metrics: verdicts, measured values, writes, queries.

Nobody should have to guess why a release was promoted or rolled back: every
SLO verdict, the value measured and the stable's baseline are exported here as
well as written to status. The write and query counters are what the
benchmarks read (a steady state must write nothing).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

ANALYSES = Counter(
    "slipway_analysis_total",
    "Analysis ticks by verdict.",
    ["namespace", "model", "release", "verdict"],
    registry=REGISTRY,
)
SLO_VERDICTS = Counter(
    "slipway_slo_verdicts_total",
    "Per-SLO verdicts.",
    ["namespace", "model", "release", "slo", "verdict"],
    registry=REGISTRY,
)
SLO_VALUE = Gauge(
    "slipway_slo_value",
    "Last value measured for the candidate.",
    ["namespace", "model", "release", "slo"],
    registry=REGISTRY,
)
SLO_BASELINE = Gauge(
    "slipway_slo_baseline",
    "Last value measured for the stable release (relative SLOs).",
    ["namespace", "model", "release", "slo"],
    registry=REGISTRY,
)
RELEASE_WEIGHT = Gauge(
    "slipway_release_weight",
    "Share of traffic the release actually has, percent.",
    ["namespace", "model", "release"],
    registry=REGISTRY,
)
PHASE_TRANSITIONS = Counter(
    "slipway_phase_transitions_total",
    "ModelRelease phase changes.",
    ["phase"],
    registry=REGISTRY,
)
KUBE_WRITES = Counter(
    "slipway_kube_writes_total",
    "Writes to the Kubernetes API, by call and namespace.",
    ["call", "namespace"],
    registry=REGISTRY,
)
MEASUREMENTS_IN_FLIGHT = Gauge(
    "slipway_measurements_in_flight",
    "Analyses (metric queries, prediction reads) running off the reconcile passes.",
    registry=REGISTRY,
)
METRIC_QUERIES = Counter(
    "slipway_metric_queries_total",
    "Queries sent to metric providers.",
    ["provider", "outcome"],
    registry=REGISTRY,
)
RECONCILES = Counter(
    "slipway_reconciles_total",
    "Reconcile passes (one per ModelDeployment key), by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "slipway_reconcile_seconds",
    "Duration of one reconcile pass.",
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "slipway_queue_depth",
    "Keys waiting in the reconcile queue (due now or later).",
    registry=REGISTRY,
)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Expose /metrics on the port (in a daemon thread)."""
    start_http_server(port, addr=address, registry=REGISTRY)
