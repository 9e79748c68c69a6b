"""Every strategy on every router that can carry it, against the real API server.

For each supported (strategy, router) pair: the promotion path with the operator SIGKILLed
and restarted at every phase and step it reaches (preview, switch, rollback window, shadow,
canary steps, promoting), the rollback path (an abort mid-phase; for blue-green inside the
window after the switch), and deleting an in-flight release. After each, what the router
serves is checked on the objects the data plane reads: the Service's selector (replicas),
the VirtualService or HTTPRoute (istio, gatewayAPI). Unsupported pairs are refused at once
(test_routers.py). Pods are kwok's; for gatewayAPI the test answers as a Gateway would
(test_routers.gateway_answers); the e2e tier sends real requests through a real Envoy.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.gateway import free_port
from e2e.operator_process import OperatorProcess, scrape
from kubernetes import client

from slipway.api import constants as c
from tests import kube
from tests.cluster import CONVERGE_SECONDS, Cluster, model_body, release_body
from tests.integration.test_routers import (
    GATEWAY_SPEC,
    gateway_answers,
    http_weights,
    vs_mirror,
    vs_weights,
)
from tests.kube import wait_for

ROUTERS = ["replicas", "istio", "gatewayAPI"]
TERMINAL = {"Succeeded", "RolledBack", "Failed", "Evaluated"}
SHADOW = {"mirrorPercent": 30, "duration": "3s"}


def router_spec(router: str) -> dict[str, Any]:
    return {"router": router, **({"gatewayAPI": GATEWAY_SPEC} if router == "gatewayAPI" else {})}


def supported() -> list[tuple[str, str]]:
    pairs = [(s, r) for s in ("direct", "canary", "blueGreen") for r in ROUTERS]
    return pairs + [("shadow", r) for r in ROUTERS if r != "replicas"]


@contextlib.contextmanager
def own_operator(
    api: client.ApiClient, kubeconfig: str, log: Path, metrics_port: int | None = None
) -> Iterator[Any]:
    """A namespace outside the shared operator's pattern, and an operator for it alone."""
    with kube.namespace(api, prefix="slipway-matrix") as namespace:
        op = OperatorProcess(kubeconfig, [namespace], log, metrics_port=metrics_port).start()
        try:
            yield namespace, op
        finally:
            op.stop()


def start(k: Cluster, router: str, **spec: Any) -> None:
    model = model_body(**router_spec(router), progressDeadline="60s", **spec)
    k.start_stable(model, release_body("fraud-v1", "v1"))


def serves_only(k: Cluster, router: str, release: str) -> Any:
    """Wait until every live request would go to ``release``, with no mirror."""
    service = f"fraud-{release}"

    def check() -> bool:
        if router == "istio":
            return vs_weights(k) == {service: 100} and vs_mirror(k) is None
        if router == "gatewayAPI":
            return http_weights(k) == {service: 100}
        deployments = k.deployments()
        others = [
            d
            for name, d in deployments.items()
            if name != service and (d.spec.replicas or 0) > 0 and name.startswith("fraud-")
        ]
        selector = k.core.read_namespaced_service("fraud", k.ns).spec.selector
        pinned = selector.get(c.LABEL_RELEASE)
        return pinned == release or (pinned is None and not others)

    return wait_for(check, timeout=CONVERGE_SECONDS, what=f"every request to {release}")


def services(k: Cluster) -> set[str]:
    return {svc.metadata.name for svc in k.core.list_namespaced_service(k.ns).items}


def kill_at_every_phase(k: Cluster, op: OperatorProcess, name: str, timeout: float) -> Any:
    """SIGKILL and restart the operator each time the release reaches a new (phase, step);
    the release's final status, and the (phase, step) the kills landed in."""
    kills: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = k.release_status(name)
        phase = status.get("phase")
        if phase in TERMINAL:
            return status, kills
        key = (phase, status.get("stepLabel"), bool(status.get("switchedAt")))
        if phase and key not in kills:
            kills.append(key)
            op.kill()
            op.start()
        time.sleep(0.2)
    raise AssertionError(f"{name} did not finish; kills at {kills}: {k.release_status(name)}")


def release_for(strategy: str, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"strategy": strategy, **extra}
    if strategy == "shadow":
        spec["shadow"] = SHADOW
    return release_body("fraud-v2", "v2", **spec)


@pytest.mark.parametrize(("strategy", "router"), supported())
def test_promotion_path_survives_a_sigkill_at_every_phase(
    api: client.ApiClient, kubeconfig: str, tmp_path: Path, strategy: str, router: str
) -> None:
    with own_operator(api, kubeconfig, tmp_path / "operator.log") as (namespace, op):
        k = Cluster(api, namespace)
        answers = gateway_answers(k, True) if router == "gatewayAPI" else contextlib.nullcontext()
        with answers:
            start(
                k,
                router,
                canary={"steps": [{"weight": 30, "pause": "2s"}, {"weight": 60, "pause": "2s"}]},
                blueGreen={"scaleDownDelay": "3s"},
            )
            k.create(c.PLURAL_RELEASE, release_for(strategy))
            status, kills = kill_at_every_phase(k, op, "fraud-v2", timeout=120)
            print(f"\n{strategy} on {router}: killed at {kills}; {status['phase']}")
            expected = "Evaluated" if strategy == "shadow" else "Succeeded"
            assert status["phase"] == expected, status.get("message")
            assert len(kills) >= (0 if strategy == "direct" else 1)  # kwok pods: phases are quick
            serves_only(k, router, "fraud-v1" if strategy == "shadow" else "fraud-v2")
        assert op.starts == len(kills) + 1
        stable = k.model_status()["stableRelease"]
        assert stable == ("fraud-v1" if strategy == "shadow" else "fraud-v2")


ROLLBACKS = [(s, r) for s, r in supported() if s != "direct"]


@pytest.mark.parametrize(("strategy", "router"), ROLLBACKS)
def test_abort_mid_phase_puts_every_request_back_on_the_stable(
    api: client.ApiClient, kubeconfig: str, tmp_path: Path, strategy: str, router: str
) -> None:
    with own_operator(api, kubeconfig, tmp_path / "operator.log") as (namespace, _op):
        k = Cluster(api, namespace)
        answers = gateway_answers(k, True) if router == "gatewayAPI" else contextlib.nullcontext()
        with answers:
            start(
                k,
                router,
                canary={"steps": [{"weight": 40, "pause": "5m"}]},
                blueGreen={"scaleDownDelay": "5m"},
            )
            v1_pods = {
                p.metadata.uid
                for p in k.core.list_namespaced_pod(
                    namespace, label_selector=f"{c.LABEL_RELEASE}=fraud-v1"
                ).items
            }
            shadow = {**SHADOW, "duration": "5m"}
            extra = {"shadow": shadow} if strategy == "shadow" else {}
            k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy=strategy, **extra))
            # Mid-phase: the canary at its step, the shadow mirroring, blue-green switched.
            mid = "switchedAt" if strategy == "blueGreen" else "weightReachedAt"
            wait_for(
                lambda: bool(k.release_status("fraud-v2").get(mid)),
                timeout=CONVERGE_SECONDS * 2,
                what=f"{strategy} on {router} to be mid-phase",
            )
            if strategy == "blueGreen":
                serves_only(k, router, "fraud-v2")
            k.custom.patch_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                namespace,
                c.PLURAL_RELEASE,
                "fraud-v2",
                {"metadata": {"annotations": {c.ANNOTATION_ACTION: "abort"}}},
            )
            status = k.wait_phase("fraud-v2", "RolledBack")
            serves_only(k, router, "fraud-v1")
        assert "aborted" in status["message"]
        after = {
            p.metadata.uid
            for p in k.core.list_namespaced_pod(
                namespace, label_selector=f"{c.LABEL_RELEASE}=fraud-v1"
            ).items
        }
        if strategy == "blueGreen" or router != "replicas":
            # The stable stayed whole (a replicas canary lends it pods to the candidate).
            assert after == v1_pods, "the rollback restarted the stable's pods"


@pytest.mark.parametrize("router", ROUTERS)
def test_deleting_an_in_flight_release_leaves_the_stable_serving_everything(
    api: client.ApiClient, namespace: str, operator: Path, router: str
) -> None:
    k = Cluster(api, namespace)
    answers = gateway_answers(k, True) if router == "gatewayAPI" else contextlib.nullcontext()
    with answers:
        start(k, router, canary={"steps": [{"weight": 40, "pause": "5m"}]})
        k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="canary"))
        wait_for(
            lambda: bool(k.release_status("fraud-v2").get("weightReachedAt")),
            timeout=CONVERGE_SECONDS,
            what="the canary at its step",
        )
        k.custom.delete_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.PLURAL_RELEASE, "fraud-v2"
        )
        serves_only(k, router, "fraud-v1")
        wait_for(
            lambda: "fraud-fraud-v2" not in k.deployments(),
            timeout=CONVERGE_SECONDS,
            what="the deleted release's Deployment pruned",
        )
        if router != "replicas":
            wait_for(
                lambda: "fraud-fraud-v2" not in services(k),
                timeout=CONVERGE_SECONDS,
                what="the deleted release's own Service pruned",
            )
            assert "fraud-fraud-v1" in services(k)  # the stable's, which the route names
    assert k.model_status()["stableRelease"] == "fraud-v1"


@pytest.mark.parametrize("router", ROUTERS)
def test_at_rest_after_a_release_nothing_is_written(
    api: client.ApiClient, kubeconfig: str, tmp_path: Path, router: str
) -> None:
    """Services, route and status all as wanted: a steady state costs no API write, even
    across the operator's 10 s safety net."""
    port = free_port()
    with own_operator(api, kubeconfig, tmp_path / "operator.log", port) as (namespace, _op):
        k = Cluster(api, namespace)
        answers = gateway_answers(k, True) if router == "gatewayAPI" else contextlib.nullcontext()
        with answers:
            start(k, router, canary={"steps": [{"weight": 50, "pause": "1s"}]})
            k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="canary"))
            k.wait_phase("fraud-v2", "Succeeded", timeout=CONVERGE_SECONDS * 2)
            serves_only(k, router, "fraud-v2")
            time.sleep(3)  # the last status writes and pruning settle
            before = scrape(port)
            time.sleep(12)
            after = scrape(port)
    writes = {
        key: after[key] - before.get(key, 0)
        for key in after
        if key.startswith("slipway_kube_writes_total{") and after[key] != before.get(key, 0)
    }
    assert writes == {}, f"{router}: writes at rest: {writes}"
