"""Blue-green on the replicas router, against the real API server and its endpoint controller.

The switch is one change of the Service's selector: the EndpointSlices the
real controller publishes name only the live release's pods, before and after.
Pods are kwok's (Ready without running), so what is checked is what the API
server and its controllers do; the e2e tier checks real requests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client

from slipway.api import constants as c
from tests.cluster import CONVERGE_SECONDS, Cluster, model_body, release_body
from tests.integration.test_controls import slipway
from tests.kube import wait_for


def endpoint_pods(api: client.ApiClient, namespace: str, service: str) -> set[str]:
    """Names of the ready pods behind a Service, as the endpoint controller published them."""
    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}"
    )
    return {
        ep.target_ref.name
        for sl in slices.items
        for ep in sl.endpoints or []
        if ep.conditions.ready and ep.target_ref
    }


def pods_of(k: Cluster, release: str) -> set[str]:
    pods = k.core.list_namespaced_pod(k.ns, label_selector=f"{c.LABEL_RELEASE}={release}")
    return {p.metadata.name for p in pods.items if not p.metadata.deletion_timestamp}


def selector(k: Cluster, name: str = "fraud") -> dict[str, str]:
    return dict(k.core.read_namespaced_service(name, k.ns).spec.selector)


def only_behind(api: client.ApiClient, k: Cluster, release: str, service: str = "fraud") -> Any:
    """Wait until exactly ``release``'s pods are behind ``service``."""
    return wait_for(
        lambda: (
            (mine := pods_of(k, release)) and endpoint_pods(api, k.ns, service) == mine and mine
        ),
        timeout=CONVERGE_SECONDS,
        what=f"only {release}'s pods behind Service {service}",
    )


def start(api: client.ApiClient, namespace: str, **blue_green: Any) -> Cluster:
    k = Cluster(api, namespace)
    spec = {"autoPromotion": False, "scaleDownDelay": "6s", **blue_green}
    k.start_stable(model_body(blueGreen=spec), release_body("fraud-v1", "v1"))
    k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="blueGreen"))
    wait_for(
        lambda: "slipway promote" in (k.release_status("fraud-v2").get("message") or ""),
        timeout=CONVERGE_SECONDS,
        what="the preview to be ready and wait for promotion",
    )
    return k


def test_preview_then_one_switch_then_the_old_stable_retires(
    api: client.ApiClient, namespace: str, operator: Path, kubeconfig: str
) -> None:
    k = start(api, namespace)
    v1_pods = only_behind(api, k, "fraud-v1")
    assert selector(k) == {c.LABEL_MODEL: "fraud", c.LABEL_RELEASE: "fraud-v1"}
    only_behind(api, k, "fraud-v2", service="fraud-preview")
    assert k.release_status("fraud-v2")["weight"] == 0

    slipway(kubeconfig, "promote", "fraud-v2", "-n", namespace)
    wait_for(
        lambda: "switchedAt" in k.release_status("fraud-v2"),
        timeout=CONVERGE_SECONDS,
        what="the switch",
    )
    only_behind(api, k, "fraud-v2")
    # Inside the window the old stable is whole and untouched: the same pods.
    assert pods_of(k, "fraud-v1") == v1_pods
    assert k.deployments()["fraud-fraud-v1"].spec.replicas == 2

    done = k.wait_phase("fraud-v2", "Succeeded")
    assert done["weight"] == 100
    assert k.model_status()["stableRelease"] == "fraud-v2"
    wait_for(
        lambda: k.deployments()["fraud-fraud-v1"].spec.replicas == 0,
        timeout=CONVERGE_SECONDS,
        what="the old stable scaled to zero after the window",
    )
    # At rest, with one release left, the Service selects the model again.
    wait_for(
        lambda: selector(k) == {c.LABEL_MODEL: "fraud"},
        timeout=CONVERGE_SECONDS,
        what="the Service unpinned at rest",
    )


def test_abort_inside_the_window_switches_back_without_starting_a_pod(
    api: client.ApiClient, namespace: str, operator: Path, kubeconfig: str
) -> None:
    k = start(api, namespace, scaleDownDelay="10m")
    v1_pods = only_behind(api, k, "fraud-v1")
    slipway(kubeconfig, "promote", "fraud-v2", "-n", namespace)
    only_behind(api, k, "fraud-v2")

    slipway(kubeconfig, "abort", "fraud-v2", "-n", namespace)
    status = k.wait_phase("fraud-v2", "RolledBack")
    assert "aborted" in status["message"]
    assert only_behind(api, k, "fraud-v1") == v1_pods  # the very pods that served before
    assert k.model_status()["stableRelease"] == "fraud-v1"
    wait_for(
        lambda: (
            k.deployments()["fraud-fraud-v2"].spec.replicas == 0
            if "fraud-fraud-v2" in k.deployments()
            else True
        ),
        timeout=CONVERGE_SECONDS,
        what="the candidate drained",
    )


def test_abort_before_the_switch_leaves_live_traffic_untouched(
    api: client.ApiClient, namespace: str, operator: Path, kubeconfig: str
) -> None:
    k = start(api, namespace)
    v1_pods = only_behind(api, k, "fraud-v1")
    slipway(kubeconfig, "abort", "fraud-v2", "-n", namespace)
    k.wait_phase("fraud-v2", "RolledBack")
    assert k.release_status("fraud-v2").get("switchedAt") is None
    # Once the drained candidate's pods are gone, the very same v1 pods serve (at rest the
    # Service selects the model again, so wait for the candidate's pods to leave first).
    wait_for(
        lambda: endpoint_pods(api, namespace, "fraud") == v1_pods,
        timeout=CONVERGE_SECONDS,
        what="only the untouched v1 pods behind the Service",
    )
