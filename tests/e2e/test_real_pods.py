"""Canaries on real pods (SLIPWAY_REAL_NODE=1): the split is what kube-proxy does.

The e2e scenarios of test_canary.py run on a simulated data plane that splits traffic by the
weights it reads from the cluster. Here nothing is simulated (e2e/realplane.py): each release
runs the model-server image as pods on the real node, Prometheus finds them through
Kubernetes discovery, and the load goes to the model's Service ClusterIP, so the candidate's
share is whatever kube-proxy does with the ready endpoints. The tests check that the operator
promotes a good release and rolls back a bad one on that evidence, that the share the model
servers answered at each step is within a few points of the weight the operator reports
(printed side by side), and that readiness is real: a hung candidate pod leaves the traffic.

Skipped without the real node; under CI=true with SLIPWAY_REAL_NODE=1 a missing node fails.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from e2e.realplane import (
    NO_ANSWER,
    Faults,
    PodPrometheus,
    RealNode,
    ServiceLoad,
    hang,
    pod_template,
    programmed,
    resume,
)
from kubernetes import client

from slipway.api import constants as c
from tests.cluster import Cluster, model_body, release_body
from tests.kube import wait_for

ENABLED = os.environ.get("SLIPWAY_REAL_NODE") == "1"
RPS = 60.0
SETTLE_S = 2  # seconds after a weight change before its traffic counts (endpoints, kube-proxy)

pytestmark = pytest.mark.skipif(
    not ENABLED,
    reason="real node not enabled: run with SLIPWAY_REAL_NODE=1 (as root) to run canaries on "
    "real pods",
)

# Our own SLOs (typed), as in the README: the candidate's and the stable's series are
# selected by the labels namespace and release that PodPrometheus's relabelling sets.
SLOS: list[dict[str, Any]] = [
    {
        "name": "error-rate",
        "errorRate": {"requests": "model_requests_total", "errors": 'code=~"5.."'},
        "threshold": {"max": 0.05, "maxIncrease": 0.02, "relative": "absolute"},
    },
    {
        "name": "latency-p95",
        "latency": {
            "histogram": "model_request_duration_seconds",
            "quantile": 0.95,
            "minEffect": 0.25,
        },
        "threshold": {"max": 0.25, "maxIncrease": 0.5, "relative": "ratio"},
    },
    {
        "name": "accuracy",
        "ratio": {"good": "model_predictions_correct_total", "total": "model_predictions_total"},
        "threshold": {"maxDecrease": 0.25, "relative": "absolute"},
    },
]


@pytest.fixture
def prometheus(
    prometheus_binary: str, kubeconfig: str, namespace: str, node: RealNode
) -> Iterator[PodPrometheus]:
    server = PodPrometheus(prometheus_binary, kubeconfig, namespace, node).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Step:
    """Traffic seen while the operator reported one (step, weight)."""

    step: int
    weight: int
    counts: Counter[str] = field(default_factory=Counter)

    def share(self, version: str) -> tuple[float, int]:
        answered = sum(n for who, n in self.counts.items() if who != NO_ANSWER)
        return (100.0 * self.counts[version] / answered if answered else math.nan), answered


class Recorder:
    """Once a second: the release's reported (phase, step, weight) and the answers since."""

    def __init__(self, k: Cluster, load: ServiceLoad) -> None:
        self.k, self.load = k, load
        self.steps: list[Step] = []
        self.log: list[str] = []

    def until(self, release: str, phases: set[str], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        key, since = None, 0
        self.load.take()
        while time.monotonic() < deadline:
            time.sleep(1)
            status = self.k.release_status(release)
            counts = self.load.take()
            now = (status.get("step"), status.get("weight"))
            self.log.append(f"{status.get('phase')} step={now[0]} weight={now[1]} {dict(counts)}")
            if status.get("phase") in phases:
                return status
            if now != key:
                key, since = now, 0
                continue
            since += 1
            if since < SETTLE_S or now[0] is None or now[1] is None:
                continue
            if not self.steps or (self.steps[-1].step, self.steps[-1].weight) != now:
                self.steps.append(Step(int(now[0]), int(now[1])))
            self.steps[-1].counts.update(counts)
        raise AssertionError(f"{release} not in {phases} after {timeout}s:\n" + "\n".join(self.log))


def within(observed: float, weight: int, n: int) -> float:
    """Allowed distance in points: four binomial standard deviations, at least 3 points."""
    p = weight / 100
    return max(3.0, 400 * math.sqrt(p * (1 - p) / n))


def check_split(steps: list[Step], candidate: str, label: str, min_answers: int = 100) -> None:
    assert steps, f"{label}: no steady step was observed"
    for s in steps:
        observed, n = s.share(candidate)
        allowed = within(observed, s.weight, n)
        print(
            f"{label} step {s.step}: operator weight {s.weight}%, observed {observed:.1f}% of "
            f"{n} answers (allowed ±{allowed:.1f}) {dict(s.counts)}"
        )
        assert n >= min_answers, f"{label} step {s.step}: only {n} answers"
        assert abs(observed - s.weight) <= allowed, (label, s)


def service_load(k: Cluster, name: str = "fraud") -> ServiceLoad:
    service = wait_for(
        lambda: k.core.read_namespaced_service(name, k.ns), timeout=30, what="the Service"
    )
    ip = service.spec.cluster_ip
    wait_for(lambda: programmed(ip), timeout=30, what=f"kube-proxy to program {ip}")
    return ServiceLoad(ip, 8080, rps=RPS, workers=16).start()


def real_model(image: str, prometheus: PodPrometheus, **spec: Any) -> dict[str, Any]:
    return model_body(
        template=pod_template(image, {"fraud-v3": Faults(latency_ms=300)}),
        replicas=4,
        progressDeadline="90s",
        metrics={"url": prometheus.url, "timeoutSeconds": 2},
        **spec,
    )


def test_canary_on_real_pods_promotes_good_and_rolls_back_bad(
    api: client.ApiClient, namespace: str, operator: Path, image: str, prometheus: PodPrometheus
) -> None:
    k = Cluster(api, namespace)
    steps = [{"weight": 25, "pause": "10s"}, {"weight": 50, "pause": "10s"}]
    model = real_model(
        image,
        prometheus,
        canary={"steps": [*steps, {"weight": 75, "pause": "10s"}]},
        analysis={"interval": "3s", "judge": "sequential", "onInconclusive": "hold"},
        slos=SLOS,
    )
    began = time.monotonic()
    k.start_stable(model, release_body("fraud-v1", "v1"))
    print(f"\nstable v1 on 4 real pods in {time.monotonic() - began:.1f}s")
    load = service_load(k)
    try:
        # Prometheus found the pods by Kubernetes discovery and labels them for the SLOs.
        up = wait_for(
            lambda: (
                len(prometheus.query(f'up{{namespace="{namespace}",release="fraud-v1"}} == 1')) == 4
            ),
            timeout=30,
            what="Prometheus to scrape the 4 stable pods by discovery",
        )
        assert up
        rec = Recorder(k, load)
        k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2"))
        good = rec.until("fraud-v2", {"Succeeded", "RolledBack", "Failed"}, timeout=240)
        assert good["phase"] == "Succeeded", rec.log
        check_split(rec.steps, "v2", "good v2")
        assert [s.weight for s in rec.steps][:3] == [25, 50, 75], rec.log

        rec = Recorder(k, load)
        k.create(c.PLURAL_RELEASE, release_body("fraud-v3", "v3"))
        bad = rec.until("fraud-v3", {"Succeeded", "RolledBack", "Failed"}, timeout=180)
        assert bad["phase"] == "RolledBack", rec.log
        assert "latency" in (bad.get("message") or ""), bad.get("message")
        print(f"bad v3 rolled back: {bad.get('message')}")
        # A 300 ms candidate is rolled back within seconds of its first step, so its step
        # may see only a few dozen answers: the allowed distance widens with fewer.
        check_split(rec.steps, "v3", "bad v3", min_answers=20)
        # Drained: once its pods are gone, no answer comes from v3.
        wait_for(lambda: not [p for p in pods(k, "fraud-v3")], timeout=30, what="v3 pods to go")
        time.sleep(SETTLE_S)
        load.take()
        time.sleep(3)
        after = load.take()
        print(f"after the rollback: {dict(after)}")
        assert after["v3"] == 0 and after["v2"] > 0, after
    finally:
        load.stop()
    print(f"whole scenario {time.monotonic() - began:.0f}s; errors seen {dict(load.errors)}")


def pods(k: Cluster, release: str) -> list[Any]:
    return list(
        k.core.list_namespaced_pod(k.ns, label_selector=f"{c.LABEL_RELEASE}={release}").items
    )


def ready_endpoints(k: Cluster, release: str) -> int:
    names = {p.metadata.name for p in pods(k, release)}
    slices = client.DiscoveryV1Api(k.core.api_client).list_namespaced_endpoint_slice(
        k.ns, label_selector="kubernetes.io/service-name=fraud"
    )
    return sum(
        1
        for s in slices.items
        for e in s.endpoints or []
        if e.target_ref and e.target_ref.name in names and e.conditions.ready
    )


def observe(load: ServiceLoad, seconds: float) -> Counter[str]:
    load.take()
    time.sleep(seconds)
    return load.take()


def share(counts: Counter[str], version: str) -> tuple[float, int]:
    n = sum(v for who, v in counts.items() if who != NO_ANSWER)
    return 100.0 * counts[version] / n, n


def test_a_hung_candidate_pod_leaves_the_traffic(
    api: client.ApiClient, namespace: str, operator: Path, image: str, prometheus: PodPrometheus
) -> None:
    """Readiness is real: a candidate pod that stops answering fails its readiness probe,
    leaves the Service's endpoints, and its share goes to the others; back when it answers."""
    k = Cluster(api, namespace)
    model = real_model(image, prometheus, canary={"steps": [{"weight": 50, "pause": "10m"}]})
    k.start_stable(model, release_body("fraud-v1", "v1"))
    k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2"))
    wait_for(
        lambda: (
            k.release_status("fraud-v2").get("weight") == 50 and ready_endpoints(k, "fraud-v2") == 2
        ),
        timeout=60,
        what="v2 at 50 % with 2 ready endpoints",
    )
    load = service_load(k)
    try:
        time.sleep(SETTLE_S)
        before = observe(load, 6)
        candidate = sorted(p.metadata.name for p in pods(k, "fraud-v2"))[0]
        pid = hang(candidate)
        t0 = time.monotonic()
        try:
            wait_for(
                lambda: ready_endpoints(k, "fraud-v2") == 1,
                timeout=15,
                what=f"hung pod {candidate} to leave the endpoints",
            )
            left_s = time.monotonic() - t0
            weight = wait_for(
                lambda: (
                    k.release_status("fraud-v2").get("weight") != 50
                    and k.release_status("fraud-v2")["weight"]
                ),
                timeout=15,
                what="the operator to report the weight the ready pods give",
            )
            time.sleep(SETTLE_S)
            during = observe(load, 6)
        finally:
            resume(pid)
        wait_for(lambda: ready_endpoints(k, "fraud-v2") == 2, timeout=15, what="the pod to be back")
        time.sleep(SETTLE_S)
        after = observe(load, 6)
    finally:
        load.stop()
    rows = [("before", 50, before), ("hung", weight, during), ("resumed", 50, after)]
    print(f"\nhung pod left the endpoints {left_s:.1f}s after SIGSTOP")
    for label, w, counts in rows:
        observed, n = share(counts, "v2")
        print(f"{label}: operator weight {w}%, observed {observed:.1f}% of {n} {dict(counts)}")
    assert weight == 33, weight  # 1 ready candidate pod of 3 ready pods
    for label, w, counts in rows:
        observed, n = share(counts, "v2")
        assert abs(observed - w) <= within(observed, w, n), (label, w, counts)
        assert counts[NO_ANSWER] == 0, (label, counts)  # the hung pod got no traffic
