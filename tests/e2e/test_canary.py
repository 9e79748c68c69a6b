"""Canaries gated by a real Prometheus, on real model-server pods behind the real Service.

(The latency scenario still runs on the simulated data plane: see its docstring.)

Each release's pods run the model-server image on the real node (e2e/realplane.py), with
faults set per release in the pod template; Prometheus finds them by Kubernetes discovery;
the load goes to the Service's ClusterIP, so the candidate's share is what kube-proxy does
with the ready endpoints. Skipped without the real node (tests/e2e/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e.realplane import Faults, pod_template
from kubernetes import client

from slipway.api import constants as c
from tests.cluster import Cluster
from tests.e2e.conftest import MakeDataPlane, MakeRealPlane
from tests.e2e.scenario import (
    KNOB_LATENCY,
    REAL_RPS,
    RPS,
    Watcher,
    fast_model,
    release,
    wait_end,
)
from tests.kube import wait_for

pytestmark = pytest.mark.e2e


def test_good_canary_is_promoted_and_regression_rolled_back(
    api: client.ApiClient, namespace: str, operator: Path, realplane: MakeRealPlane, image: str
) -> None:
    plane = realplane(rps=REAL_RPS)
    k = Cluster(api, namespace)
    template = pod_template(image, {"fraud-v3": Faults(error_rate=0.5)})
    k.start_stable(
        fast_model(namespace, plane.prometheus_url, template),
        release(namespace, "fraud-v1", "v1"),
    )
    plane.serve()
    plane.wait_scraped("fraud-v1", 4)

    with Watcher(api, namespace, "fraud-v2", "fraud-fraud-v1") as watch:
        k.create(c.PLURAL_RELEASE, release(namespace, "fraud-v2", "v2", strategy="canary"))
        v2_pods_at_50 = wait_for(
            lambda: (
                k.release_status("fraud-v2").get("weight") == 50
                and {
                    p.metadata.uid
                    for p in k.core.list_namespaced_pod(
                        namespace, label_selector=f"{c.LABEL_RELEASE}=fraud-v2"
                    ).items
                }
            ),
            timeout=90,
            what="fraud-v2 at 50 %",
        )
        done = k.wait_phase("fraud-v2", "Succeeded", timeout=90)
    assert {25, 50} <= set(watch.weights), watch.weights
    assert watch.min_stable_ready >= 1, "the stable must keep serving during the canary"
    passes = [r for r in done["analysis"] if r["verdict"] == "Pass"]
    assert passes, "promotion needs passing analysis"
    slo = passes[-1]["slos"][0]
    assert slo["value"] is not None and slo["threshold"]
    assert plane.answered()["v2"] > 50, "the candidate took real traffic"
    # Promotion restarted nothing: the candidate's pods from the 50 % step still run.
    pods_now = {
        p.metadata.uid
        for p in k.core.list_namespaced_pod(
            namespace, label_selector=f"{c.LABEL_RELEASE}=fraud-v2"
        ).items
    }
    assert v2_pods_at_50 <= pods_now
    wait_for(lambda: k.deployments()["fraud-fraud-v1"].spec.replicas == 0, 30, "old stable at zero")

    k.create(
        c.PLURAL_RELEASE,
        release(namespace, "fraud-v3", "v3", strategy="canary"),
    )
    rolled = wait_end(k, "fraud-v3", timeout=90)
    assert rolled["phase"] == "RolledBack", rolled.get("message")
    # The sequential judge: a Fail is evidence beyond the tolerance, named in the message.
    assert "SLO error-rate" in rolled["message"] and "above" in rolled["message"]
    fail = next(r for r in reversed(rolled["analysis"]) if r["verdict"] == "Fail")
    error_rate = next(s for s in fail["slos"] if s["slo"] == "error-rate")
    assert error_rate["verdict"] == "Fail" and error_rate["value"] > 0.2

    def candidate_gone_and_stable_full() -> bool:
        deployments = k.deployments()
        candidate = deployments.get("fraud-fraud-v3")  # scaled to zero, then pruned
        return (candidate is None or candidate.spec.replicas == 0) and (
            deployments["fraud-fraud-v2"].status.ready_replicas == 4
        )

    wait_for(candidate_gone_and_stable_full, 30, "candidate at zero and stable back at full size")
    assert k.model_status()["stableRelease"] == "fraud-v2"


def test_latency_regression_relative_to_stable_is_rolled_back(
    api: client.ApiClient, namespace: str, operator: Path, dataplane: MakeDataPlane
) -> None:
    """Still on the simulated data plane: on real pods the operator's relative latency check
    misjudged (reported on issue 8). With a stable at ~15 ms it compared the share slower
    than the first 5 ms bucket (100 % for both) and promoted the 120 ms candidate (3 of 4
    runs); with a ~1 ms stable whose p95 sits at that bucket's edge it held the candidate
    undecided past 90 s (2 of 5 runs). Moves to real pods once the operator handles both."""
    plane = dataplane(rps=RPS)
    k = Cluster(api, namespace)
    k.start_stable(
        fast_model(namespace, plane.prometheus_url), release(namespace, "fraud-v1", "v1")
    )
    k.create(
        c.PLURAL_RELEASE,
        release(namespace, "fraud-v2", "v2", annotations={KNOB_LATENCY: "120"}, strategy="canary"),
    )
    rolled = k.wait_phase("fraud-v2", "RolledBack", timeout=90)
    # 120 ms stays under the absolute 250 ms ceiling: only the comparison with the stable fails.
    assert "SLO latency-p95" in rolled["message"], rolled["message"]
    assert "above" in rolled["message"] and "stable*1.5" in rolled["message"], rolled["message"]
    fail = next(r for r in reversed(rolled["analysis"]) if r["verdict"] == "Fail")
    latency = next(s for s in fail["slos"] if s["slo"] == "latency-p95")
    assert latency["verdict"] == "Fail" and latency["judge"] == "sequential"
    assert latency["lower"] > latency["limit"], latency
