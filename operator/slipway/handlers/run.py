"""Starting the operator: kopf in standalone mode, all namespaces or the ones given."""

from __future__ import annotations

import logging
import os


def run_operator(namespaces: list[str], prometheus_url: str | None, liveness: str | None) -> int:
    """Run until interrupted; returns the process exit code."""
    import kopf

    import slipway.handlers.operator  # noqa: F401  (registers the handlers)

    if prometheus_url:
        os.environ["SLIPWAY_PROMETHEUS_URL"] = prometheus_url
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    kopf.configure(verbose=False)
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
    )
    return 0
