"""Router gatewayAPI end to end: real Envoy (via Envoy Gateway) in front of real pods.

Envoy Gateway reads the HTTPRoute the operator writes from our API server and programs a
real Envoy on 127.0.0.1; the load goes to that Envoy, which sends each request to one
release's Service (real pod IPs on the real node's bridge) as the route's weights say, and
copies the share the mirror filter says to the candidate. Every figure below is counted from
answers (which version served each request) or from the model servers' own prediction logs,
never from what the operator set; they are printed next to what it set.

- canary: the observed split at each step is within a few points of the weight set;
- shadow: a candidate whose predictions disagree with the stable's (same latency, same
  errors) is stopped on prediction agreement, the mirrored share is what the route says,
  and no user ever got one of its answers; an identical candidate ends Evaluated;
- blue-green: the switch and the switch back inside the rollback window, timed from the
  request to the moment every answer comes from the other version, with no pod started.

Needs the real node (SLIPWAY_REAL_NODE=1) and the gateway (SLIPWAY_GATEWAY=1; `make` turns
both on as root, as in CI, where they must run, never skip).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from e2e.realplane import Faults, PodPrometheus, RealNode, ServiceLoad, pod_template
from kubernetes import client

from e2e import gateway
from slipway.analysis.agreement import KubePredictionSource, PredictionSourceError
from slipway.api import constants as c
from tests.cluster import Cluster, model_body, release_body
from tests.e2e.test_real_pods import SLOS, Recorder, check_split, within
from tests.kube import wait_for

REAL_NODE = os.environ.get("SLIPWAY_REAL_NODE") == "1"
RPS = 60.0
HOST = "fraud.test"

pytestmark = pytest.mark.skipif(
    not (REAL_NODE and gateway.enabled()),
    reason="needs the real node and the Envoy Gateway data plane: SLIPWAY_REAL_NODE=1 and"
    " SLIPWAY_GATEWAY=1 (make sets both when run as root)",
)


@pytest.fixture
def gw(
    api: client.ApiClient, namespace: str, envoy_gateway: gateway.GatewayProcess
) -> gateway.Gateway:
    return gateway.create_gateway(api, namespace)


@pytest.fixture
def prometheus(
    prometheus_binary: str, kubeconfig: str, namespace: str, node: RealNode
) -> Iterator[PodPrometheus]:
    server = PodPrometheus(prometheus_binary, kubeconfig, namespace, node).start()
    try:
        yield server
    finally:
        server.stop()


def routed_model(
    image: str,
    prometheus: PodPrometheus,
    gw: gateway.Gateway,
    faults: dict[str, Faults] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return model_body(
        template=pod_template(image, faults or {}),
        replicas=4,
        progressDeadline="90s",
        metrics={"url": prometheus.url, "timeoutSeconds": 2},
        router="gatewayAPI",
        gatewayAPI=gw.routing(HOST),
        **spec,
    )


def start(
    api: client.ApiClient, k: Cluster, gw: gateway.Gateway, model: dict[str, Any]
) -> ServiceLoad:
    """v1 as the stable behind the route; load through Envoy once the route is live."""
    began = time.monotonic()
    k.start_stable(model, release_body("fraud-v1", "v1"))
    gateway.wait_route_accepted(api, k.ns, "fraud")
    load = ServiceLoad(
        "127.0.0.1", gw.port, rps=RPS, workers=16, host_header=HOST, feedback=False
    ).start()
    wait_for(
        lambda: load.take().get("v1", 0) >= 10,
        timeout=30,
        what="v1 to answer through Envoy",
    )
    print(f"\nv1 on 4 real pods behind Envoy in {time.monotonic() - began:.1f}s")
    return load


def release_annotate(k: Cluster, name: str, value: str) -> None:
    k.custom.patch_namespaced_custom_object(
        c.GROUP,
        c.VERSION,
        k.ns,
        c.PLURAL_RELEASE,
        name,
        {"metadata": {"annotations": {c.ANNOTATION_ACTION: value}}},
    )


def test_canary_through_envoy_splits_as_the_route_says_then_promotes(
    api: client.ApiClient,
    namespace: str,
    operator: Path,
    image: str,
    prometheus: PodPrometheus,
    gw: gateway.Gateway,
) -> None:
    k = Cluster(api, namespace)
    steps = [{"weight": 20, "pause": "10s"}, {"weight": 50, "pause": "10s"}]
    model = routed_model(
        image,
        prometheus,
        gw,
        canary={"steps": steps},
        analysis={"interval": "3s", "judge": "sequential", "onInconclusive": "hold"},
        slos=[slo for slo in SLOS if "ratio" not in slo],  # no /feedback through Envoy
    )
    load = start(api, k, gw, model)
    try:
        rec = Recorder(k, load)
        k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2"))
        status = rec.until("fraud-v2", {"Succeeded", "RolledBack", "Failed"}, timeout=240)
        print("\n".join(rec.log))
        assert status["phase"] == "Succeeded", status.get("message")
        check_split(rec.steps, "v2", "gatewayAPI canary")
        assert [s.weight for s in rec.steps][:2] == [20, 50]
        wait_for(
            lambda: (counts := load.take()) and set(counts) == {"v2"} and counts["v2"] >= 10,
            timeout=30,
            what="every answer from v2 after the promotion",
            interval=1,
        )
    finally:
        load.stop()
    assert not load.errors, f"requests failed through the rollout: {dict(load.errors)}"


def mirrored_share(k: Cluster, api: client.ApiClient, since: float) -> tuple[float, int, int]:
    """(candidate's joined share of the stable's requests, joined, stable requests) since
    ``since``, from both releases' prediction logs (what the model servers answered)."""
    source = KubePredictionSource(api)
    stable = source.predictions(k.ns, "fraud", "fraud-v1", since)
    candidate = source.predictions(k.ns, "fraud", "fraud-v2", since)
    joined = len(stable.keys() & candidate.keys())
    return (100.0 * joined / len(stable) if stable else 0.0), joined, len(stable)


def shadow_until_verdict(
    api: client.ApiClient, k: Cluster, load: ServiceLoad, shadow: dict[str, Any]
) -> tuple[dict[str, Any], float, int]:
    """Ship v2 as a shadow release; the observed mirrored share, and its final status."""
    k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="shadow", shadow=shadow))
    live = wait_for(
        lambda: (
            (s := k.release_status("fraud-v2")).get("mirrorPercent") == shadow["mirrorPercent"]
            and s
        ),
        timeout=90,
        what="the mirror read back from the live route",
    )
    # From when the mirror went live, plus Envoy's second to take the route.
    since = datetime.fromisoformat(live["weightReachedAt"]).timestamp() + 1
    share, joined, total = 0.0, 0, 0
    for _ in range(16):  # until the verdict takes the candidate's pods (and their logs) away
        time.sleep(0.5)
        try:
            sample = mirrored_share(k, api, since)
        except PredictionSourceError:
            break
        # Only a sample taken while every candidate pod still served counts (a rollback
        # drains them one by one, and a drained pod's log is gone).
        if k.release_status("fraud-v2").get("phase") != "Progressing":
            break
        share, joined, total = sample
    assert total >= 30, f"too few requests to measure the mirror: {joined} of {total}"
    print(
        f"\nmirror: set {shadow['mirrorPercent']}%, observed {share:.1f}% ({joined} of {total}"
        f" stable requests reached v2 too); route: {live.get('route')}"
    )
    status = k.wait_phase_in("fraud-v2", {"Evaluated", "RolledBack", "Failed"}, timeout=180)
    return status, share, total


def shadow_scenario(
    api: client.ApiClient,
    k: Cluster,
    image: str,
    prometheus: PodPrometheus,
    gw: gateway.Gateway,
    shadow: dict[str, Any],
    faults: dict[str, Faults] | None = None,
) -> tuple[dict[str, Any], float, int, ServiceLoad]:
    """v1 stable behind Envoy, then v2 as a shadow release until its verdict."""
    analysis = {"interval": "3s", "judge": "sequential", "onInconclusive": "hold"}
    model = routed_model(image, prometheus, gw, faults=faults, analysis=analysis)
    load = start(api, k, gw, model)
    try:
        status, share, total = shadow_until_verdict(api, k, load, shadow)
    finally:
        load.stop()
    print(f"verdict: {status['phase']}: {status['message']}")
    return status, share, total, load


def test_shadow_through_envoy_stops_a_model_that_disagrees_before_any_user_sees_it(
    api: client.ApiClient,
    namespace: str,
    operator: Path,
    image: str,
    prometheus: PodPrometheus,
    gw: gateway.Gateway,
) -> None:
    k = Cluster(api, namespace)
    # v2 flips 30 % of its predictions: same latency, same errors, different answers.
    shadow = {"mirrorPercent": 50, "duration": "20s", "minAgreement": 0.9}
    flips = {"fraud-v2": Faults(accuracy_drop=0.3)}
    status, share, total, load = shadow_scenario(api, k, image, prometheus, gw, shadow, flips)
    assert status["phase"] == "RolledBack", status["message"]
    assert "agreement" in status["message"]
    assert abs(share - 50) <= within(share, 50, total), (share, total)
    assert "v2" not in load.totals, f"a user got an answer from v2: {dict(load.totals)}"
    assert k.model_status()["stableRelease"] == "fraud-v1"


def test_shadow_through_envoy_of_an_identical_model_ends_evaluated(
    api: client.ApiClient,
    namespace: str,
    operator: Path,
    image: str,
    prometheus: PodPrometheus,
    gw: gateway.Gateway,
) -> None:
    k = Cluster(api, namespace)
    shadow = {"mirrorPercent": 25, "duration": "15s", "minAgreement": 0.9}
    status, share, total, load = shadow_scenario(api, k, image, prometheus, gw, shadow)
    assert status["phase"] == "Evaluated", status["message"]
    assert abs(share - 25) <= within(share, 25, total), (share, total)
    assert "v2" not in load.totals
    agreement = [r for r in status["analysis"][-1]["slos"] if r["slo"] == "agreement"]
    assert agreement and agreement[0]["verdict"] == "Pass"


def until_only(
    load: ServiceLoad, version: str, timeout: float = 30, window: float = 0.25, least: int = 5
) -> float:
    """Seconds until every answer in a ``window`` comes from ``version`` (at least
    ``least`` of them): the measure's resolution is the window."""
    began = time.monotonic()
    load.take()
    while time.monotonic() - began < timeout:
        time.sleep(window)
        counts: Counter[str] = load.take()
        if set(counts) == {version} and counts[version] >= least:
            return time.monotonic() - began
    raise AssertionError(f"answers never all came from {version} within {timeout}s")


def test_blue_green_through_envoy_switches_and_switches_back_inside_the_window(
    api: client.ApiClient,
    namespace: str,
    operator: Path,
    image: str,
    prometheus: PodPrometheus,
    gw: gateway.Gateway,
) -> None:
    k = Cluster(api, namespace)
    model = routed_model(
        image, prometheus, gw, blueGreen={"autoPromotion": False, "scaleDownDelay": "5m"}
    )
    load = start(api, k, gw, model)
    try:
        k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="blueGreen"))
        wait_for(
            lambda: "slipway promote" in (k.release_status("fraud-v2").get("message") or ""),
            timeout=120,
            what="the preview to be ready and wait for promotion",
        )
        before = load.take()
        assert set(before) == {"v1"}, f"the preview answered live requests: {dict(before)}"
        v1_pods = {
            p.metadata.uid
            for p in k.core.list_namespaced_pod(
                namespace, label_selector=f"{c.LABEL_RELEASE}=fraud-v1"
            ).items
        }
        release_annotate(k, "fraud-v2", "promote")
        switch = until_only(load, "v2")
        # Claimed only once Envoy Gateway accepted the switch's generation (its own status).
        claimed = wait_for(
            lambda: (s := k.release_status("fraud-v2")).get("switchedAt") and s,
            timeout=30,
            what="the switch claimed once Envoy Gateway accepted the route's generation",
        )
        assert "accepted" in (claimed.get("route") or ""), claimed.get("route")
        release_annotate(k, "fraud-v2", "abort")
        back = until_only(load, "v1")
        status = k.wait_phase("fraud-v2", "RolledBack", timeout=30)
    finally:
        load.stop()
    print(
        f"\nblue-green through Envoy: switch {switch:.2f}s, switch back inside the window"
        f" {back:.2f}s (request to every answer from the other version)"
    )
    after = {
        p.metadata.uid
        for p in k.core.list_namespaced_pod(
            namespace, label_selector=f"{c.LABEL_RELEASE}=fraud-v1"
        ).items
    }
    assert after == v1_pods, "the switch back started pods: it was not instant"
    assert "aborted" in status["message"]
    assert k.model_status()["stableRelease"] == "fraud-v1"
