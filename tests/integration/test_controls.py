"""Manual controls through the `slipway` CLI, on a real cluster with the operator running.

The CLI only writes the documented annotations, so these tests also prove the
GitOps/kubectl path. Long pauses keep the canaries from moving on their own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kubernetes import client

from slipway.api import constants as c
from tests.cluster import Cluster, model_body, release_body
from tests.kube import wait_for

SLOW = {"steps": [{"weight": 25, "pause": "10m"}, {"weight": 50, "pause": "10m"}]}


def slipway(kubeconfig: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "slipway.cli.main", *args],
        env={"KUBECONFIG": kubeconfig, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_pause_resume_promote_abort_and_rollback(
    api: client.ApiClient, namespace: str, operator: Path, kubeconfig: str
) -> None:
    k = Cluster(api, namespace)
    k.start_stable(model_body(replicas=4, canary=SLOW), release_body("fraud-v1", "v1"))

    k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="canary"))
    wait_for(
        lambda: k.release_status("fraud-v2").get("weight") == 25,
        timeout=30,
        what="fraud-v2 at 25 %",
    )
    assert "pause requested" in slipway(kubeconfig, "pause", "fraud-v2", "-n", namespace)
    paused = k.wait_phase("fraud-v2", "Paused")
    assert "paused by annotation" in paused["message"]
    slipway(kubeconfig, "resume", "fraud-v2", "-n", namespace)
    k.wait_phase("fraud-v2", "Progressing")

    slipway(kubeconfig, "promote", "fraud-v2", "-n", namespace)
    done = k.wait_phase("fraud-v2", "Succeeded")
    assert "promoted by annotation" in done["message"]
    assert k.model_status()["stableRelease"] == "fraud-v2"
    v1 = wait_for(
        lambda: (d := k.deployments()["fraud-fraud-v1"]).spec.replicas == 0 and d,
        timeout=30,
        what="the old stable at zero",
    )
    assert v1.metadata.name == "fraud-fraud-v1"

    k.create(c.PLURAL_RELEASE, release_body("fraud-v3", "v3", strategy="canary"))
    wait_for(
        lambda: k.release_status("fraud-v3").get("weight") == 25, timeout=30, what="v3 at 25 %"
    )
    slipway(kubeconfig, "abort", "fraud-v3", "-n", namespace)
    aborted = k.wait_phase("fraud-v3", "RolledBack")
    assert any(cond["reason"] == "Aborted" for cond in aborted["conditions"])
    wait_for(
        lambda: k.deployments()["fraud-fraud-v2"].status.ready_replicas == 4,
        timeout=30,
        what="the stable back at full size",
    )

    out = slipway(kubeconfig, "rollback", "fraud", "-n", namespace)
    assert "previous stable" in out
    model = wait_for(
        lambda: (s := k.model_status()).get("stableRelease") == "fraud-v1" and s,
        timeout=30,
        what="the rollback to fraud-v1",
    )
    assert model["history"][0]["release"] == "fraud-v1"
    assert model["history"][0]["note"] == "rollback from fraud-v2"
    assert model["handledRollback"]
    wait_for(
        lambda: (
            k.deployments()["fraud-fraud-v2"].spec.replicas == 0
            and k.deployments()["fraud-fraud-v1"].status.ready_replicas == 4
        ),
        timeout=30,
        what="v1 serving at full size and v2 at zero",
    )
    described = slipway(kubeconfig, "describe", "fraud-v3", "-n", namespace)
    assert "RolledBack" in described
