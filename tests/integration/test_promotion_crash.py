"""Issue 13, section 2, on the real API server: a previous stable left scaled up by a crash.

The state a crash between a promotion's record and its scale-down leaves, made by hand
while the operator is stopped: v2 the stable, v1 (kept at zero for a rollback) scaled
back to one pod, and a canary v3 created. Before the fix v1 kept its pod through v3's
whole canary and v3 claimed 25 % while its real share of the ready pods was 20 %. Now v1
goes to zero before v3's Deployment exists (never three of the model's Deployments
scaled up), and the share v3 claims is its share of the ready pods behind the Service.

Pods run on kwok's fake nodes (Ready without running anything): the decision reads
Deployment status, the check reads the pods. Its own namespace and operator, since it
stops the operator.
"""

from __future__ import annotations

import time
from pathlib import Path

from e2e.faultwatch import ScaledUp, ready_shares, share
from e2e.operator_process import OperatorProcess
from kubernetes import client

from slipway.api import constants as c
from tests import kube
from tests.cluster import Cluster, model_body, release_body
from tests.kube import wait_for

HELD = {"steps": [{"weight": 25, "pause": "10m"}]}


def replicas(k: Cluster, release: str) -> int:
    return int(k.apps.read_namespaced_deployment(f"fraud-{release}", k.ns).spec.replicas or 0)


def test_a_stray_previous_stable_goes_to_zero_before_the_next_canary_and_shares_are_true(
    api: client.ApiClient, kubeconfig: str, tmp_path: Path
) -> None:
    with kube.namespace(api, prefix="slipway-crash") as namespace:
        k = Cluster(api, namespace)
        op = OperatorProcess(kubeconfig, [namespace], tmp_path / "operator.log").start()
        try:
            k.start_stable(
                model_body(replicas=4, progressDeadline="60s", canary=HELD),
                release_body("fraud-v1", "v1"),
            )
            k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="direct"))
            k.wait_phase("fraud-v2", "Succeeded")
            wait_for(lambda: replicas(k, "fraud-v1") == 0, 30, "fraud-v1 kept at zero")

            op.stop()
            k.apps.patch_namespaced_deployment_scale(
                "fraud-fraud-v1", namespace, {"spec": {"replicas": 1}}
            )
            wait_for(
                lambda: ready_shares(k.core, namespace, "fraud").get("fraud-v1") == 1,
                30,
                "fraud-v1's pod ready behind the Service",
            )
            with ScaledUp(api, namespace) as up:
                k.create(c.PLURAL_RELEASE, release_body("fraud-v3", "v3", strategy="canary"))
                op.start()
                began = time.monotonic()
                wait_for(lambda: replicas(k, "fraud-v1") == 0, 15, "fraud-v1 back at zero")
                cleaned = time.monotonic() - began
                status = wait_for(
                    lambda: (s := k.release_status("fraud-v3")).get("weightReachedAt") and s,
                    60,
                    "fraud-v3 at its first step's weight",
                )
                counts = ready_shares(k.core, namespace, "fraud")
            assert up.most["fraud"] <= 2, f"three releases scaled up at once: {up.crowded}"
            assert up.events > 0
            assert status["weight"] == share(counts, "fraud-v3") == 25, (status, counts)
            assert "fraud-v1" not in counts, counts
            assert k.release_status("fraud-v3")["phase"] == "Progressing"
            assert k.model_status()["stableRelease"] == "fraud-v2"
            assert replicas(k, "fraud-v1") == 0, "kept for a rollback, at zero"
            print(f"fraud-v1 back at zero {cleaned:.1f}s after the operator started")
        finally:
            op.stop()
