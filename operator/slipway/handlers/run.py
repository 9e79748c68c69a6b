"""Starting the operator: kopf in standalone mode, all namespaces or the ones given."""

from __future__ import annotations

import logging
import os


def run_operator(
    namespaces: list[str],
    prometheus_url: str | None,
    liveness: str | None,
    metrics_port: int | None = None,
    workers: int | None = None,
) -> int:
    """Run until interrupted; returns the process exit code."""
    import kopf

    import slipway.handlers.operator  # noqa: F401  (registers the handlers)

    if prometheus_url:
        os.environ["SLIPWAY_PROMETHEUS_URL"] = prometheus_url
    if workers is not None:
        os.environ["SLIPWAY_WORKERS"] = str(workers)
    kopf.configure(verbose=False)
    # One "Timer succeeded" line per object per second says nothing; failures still show.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if metrics_port is not None:
        from slipway.metrics import serve

        serve(metrics_port)
    logging.getLogger("slipway").info(
        "slipway operator starting (%s)", ", ".join(namespaces) or "all namespaces"
    )
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
    )
    return 0
