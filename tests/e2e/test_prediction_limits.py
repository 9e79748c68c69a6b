"""A pod that answers /predictions too much or too slowly costs the operator little, and
delays nothing (issue 13, section 3; DESIGN.md practice 13).

Real pods on the real node, read by the operator through the real API server's pod proxy,
in a shadow phase on gatewayAPI behind the real Envoy (the mirror must be live for a shadow
to run). The model server's fault switches (examples/model-server) make the candidate answer
``GET /predictions`` with 200 MiB and no Content-Length, or one byte a second.

- 200 MiB: the agreement SLO is Inconclusive naming the pod and the 8 MiB limit, read after
  read, and the operator's peak resident memory (VmHWM in /proc) grows by less than 64 MiB.
- one byte a second: while the operator is in the middle of such a read, an abort of that
  release and an abort of another model's canary are each carried out within 10 s. The
  operator runs with a single reconcile worker (``--workers 1``), so a pass that waited on the
  read would hold up both: only passes that never wait on a read pass this.

Each test runs its own operator (its own namespace, outside the shared operator's pattern)
so its memory and its one worker are its own. Needs SLIPWAY_REAL_NODE=1 and SLIPWAY_GATEWAY=1.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.operator_process import OperatorProcess, scrape
from e2e.realplane import Faults, pod_template
from kubernetes import client

from e2e import gateway
from slipway.analysis.agreement import MAX_ANSWER_BYTES
from slipway.api import constants as c
from tests import kube
from tests.cluster import Cluster, model_body, release_body
from tests.kube import wait_for

REAL_NODE = os.environ.get("SLIPWAY_REAL_NODE") == "1"
HOST = "fraud.test"
MIB = 1 << 20
GROWTH_LIMIT_MIB = 64
ABORT_WITHIN_S = 10.0
TOO_SLOW = "the answer was not complete within"
SHADOW = {"mirrorPercent": 50, "duration": "10m", "minAgreement": 0.9}

pytestmark = pytest.mark.skipif(
    not (REAL_NODE and gateway.enabled()),
    reason="needs the real node and the Envoy Gateway data plane: SLIPWAY_REAL_NODE=1 and"
    " SLIPWAY_GATEWAY=1 (make sets both when run as root)",
)


@contextlib.contextmanager
def own_operator(
    api: client.ApiClient, kubeconfig: str, log: Path, *args: str
) -> Iterator[tuple[str, OperatorProcess]]:
    """A namespace outside the shared operator's pattern, and an operator for it alone."""
    with kube.namespace(api, prefix="slipway-reads") as namespace:
        op = OperatorProcess(
            kubeconfig, [namespace], log, metrics_port=gateway.free_port(), extra_args=args
        ).start()
        try:
            yield namespace, op
        finally:
            op.stop()


def shadowed_model(image: str, gw: gateway.Gateway, faults: dict[str, Faults]) -> dict[str, Any]:
    """One replica per release, no SLOs but prediction agreement, analysed every 2 s."""
    return model_body(
        template=pod_template(image, faults),
        replicas=1,
        progressDeadline="90s",
        router="gatewayAPI",
        gatewayAPI=gw.routing(HOST),
        analysis={"interval": "2s", "judge": "sequential", "onInconclusive": "hold"},
    )


def agreement_reasons(k: Cluster, release: str) -> list[str]:
    """The agreement SLO's reason in each analysis the release recorded, oldest first."""
    return [
        slo.get("reason", "")
        for record in k.release_status(release).get("analysis") or []
        for slo in record.get("slos") or []
        if slo.get("slo") == "agreement"
    ]


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def in_flight(op: OperatorProcess) -> float:
    assert op.metrics_port is not None
    return scrape(op.metrics_port).get("slipway_measurements_in_flight", 0.0)


def abort(k: Cluster, release: str) -> float:
    """Annotate ``slipway.dev/action=abort`` (what ``slipway abort`` writes); seconds until
    the release's status says it was rolled back."""
    began = time.monotonic()
    k.custom.patch_namespaced_custom_object(
        c.GROUP,
        c.VERSION,
        k.ns,
        c.PLURAL_RELEASE,
        release,
        {"metadata": {"annotations": {c.ANNOTATION_ACTION: "abort"}}},
    )
    status = wait_for(
        lambda: (s := k.release_status(release)).get("phase") in {"RolledBack", "Failed"} and s,
        timeout=240,
        what=f"the abort of {release} to be carried out",
        interval=0.1,
    )
    took = time.monotonic() - began
    assert status["phase"] == "RolledBack" and "abort" in (status.get("message") or ""), status
    return took


def test_a_200_mib_answer_is_cut_at_the_limit_and_the_operator_barely_grows(
    api: client.ApiClient,
    kubeconfig: str,
    image: str,
    envoy_gateway: gateway.GatewayProcess,
    tmp_path: Path,
) -> None:
    with own_operator(api, kubeconfig, tmp_path / "operator.log") as (namespace, op):
        k = Cluster(api, namespace)
        gw = gateway.create_gateway(api, namespace)
        faults = {"fraud-v2": Faults(predictions_bytes=200 * MIB)}
        k.start_stable(shadowed_model(image, gw, faults), release_body("fraud-v1", "v1"))
        time.sleep(3)  # the operator settles: watches filled, the stable's passes done
        assert op.process is not None
        before = peak_rss_mib(op.process.pid)

        k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="shadow", shadow=SHADOW))
        refused = wait_for(
            lambda: (
                len(r := [x for x in agreement_reasons(k, "fraud-v2") if "limit" in x]) >= 3 and r
            ),
            timeout=150,
            what="three analyses of fraud-v2 that met its 200 MiB answer",
        )
        after = peak_rss_mib(op.process.pid)
        status = k.release_status("fraud-v2")

    print(f"\nagreement: {refused[-1]}")
    print(
        f"operator peak RSS (VmHWM): {before:.1f} MiB before, {after:.1f} MiB after"
        f" {len(refused)} reads of a 200 MiB answer: +{after - before:.1f} MiB"
        f" (limit per answer {MAX_ANSWER_BYTES // MIB} MiB; bound asserted"
        f" {GROWTH_LIMIT_MIB} MiB)"
    )
    reason = refused[-1]
    assert f"GET /predictions of pod {namespace}/" in reason and "fraud-v2" in reason, reason
    assert "larger than the 8 MiB limit" in reason, reason
    assert status["phase"] in ("Progressing", "Paused"), status
    assert all(r["verdict"] != "Pass" for r in status["analysis"]), status["analysis"]
    assert after - before < GROWTH_LIMIT_MIB


def test_a_trickling_pod_delays_neither_its_abort_nor_another_models(
    api: client.ApiClient,
    kubeconfig: str,
    image: str,
    envoy_gateway: gateway.GatewayProcess,
    tmp_path: Path,
) -> None:
    log = tmp_path / "operator.log"
    with own_operator(api, kubeconfig, log, "--workers", "1") as (namespace, op):
        k = Cluster(api, namespace)
        gw = gateway.create_gateway(api, namespace)
        faults = {"fraud-v2": Faults(predictions_trickle_bps=1)}
        k.start_stable(shadowed_model(image, gw, faults), release_body("fraud-v1", "v1"))
        # Another model, a canary held in a one-hour pause.
        other = model_body(
            "churn",
            template=pod_template(image),
            replicas=1,
            progressDeadline="90s",
            canary={"steps": [{"weight": 50, "pause": "1h"}]},
        )
        k.start_stable(other, release_body("churn-v1", "v1", deployment="churn"))
        k.create(c.PLURAL_RELEASE, release_body("churn-v2", "v2", deployment="churn"))
        wait_for(
            lambda: (s := k.release_status("churn-v2")).get("weightReachedAt") and s,
            timeout=120,
            what="churn-v2 to reach its canary step",
        )

        k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="shadow", shadow=SHADOW))
        cut = wait_for(
            lambda: [r for r in agreement_reasons(k, "fraud-v2") if TOO_SLOW in r],
            timeout=150,
            what="an analysis of fraud-v2 that met its trickling answer",
        )
        # The next read of the trickle has begun: abort while it is in flight.
        wait_for(lambda: in_flight(op) >= 1, timeout=30, what="a read in flight", interval=0.1)
        other_took = abort(k, "churn-v2")
        assert in_flight(op) >= 1, "the trickling read ended before the other model's abort"
        own_took = abort(k, "fraud-v2")

    print(f"\nagreement: {cut[-1]}")
    print(
        f"one reconcile worker, a read trickling at 1 byte/s in flight: abort of the other"
        f" model's canary carried out in {other_took:.2f} s, of the trickling release in"
        f" {own_took:.2f} s (bound asserted {ABORT_WITHIN_S:g} s)"
    )
    assert f"GET /predictions of pod {namespace}/" in cut[-1]
    assert "the answer was not complete within 10 s" in cut[-1]
    assert len(cut[-1]) < 400, "a reason is a sentence, not the answer"
    assert other_took < ABORT_WITHIN_S
    assert own_took < ABORT_WITHIN_S
