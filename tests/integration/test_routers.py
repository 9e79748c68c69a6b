"""Routers istio and gatewayAPI, and the shadow strategy, against the real API server.

The real Gateway API and Istio CRDs are installed, so every HTTPRoute and
VirtualService the operator writes is validated by the API server. Pods are
kwok's; Istio writes no route status, and no Gateway controller runs in this
tier, so for gatewayAPI the test writes what a Gateway would (Accepted, or
refused) into the route's status. The e2e tier sends real requests through a
real Envoy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from slipway.api import constants as c
from tests.cluster import CONVERGE_SECONDS, Cluster, model_body, release_body
from tests.kube import wait_for

ISTIO = ("networking.istio.io", "v1", "virtualservices")
GATEWAY = ("gateway.networking.k8s.io", "v1", "httproutes")


def route(k: Cluster, kind: tuple[str, str, str], name: str = "fraud") -> dict[str, Any]:
    try:
        obj: dict[str, Any] = k.custom.get_namespaced_custom_object(
            kind[0], kind[1], k.ns, kind[2], name
        )
    except ApiException as error:
        if error.status == 404:
            return {}
        raise
    return obj


def vs_weights(k: Cluster) -> dict[str, int]:
    http = (route(k, ISTIO).get("spec") or {}).get("http") or [{}]
    return {
        d["destination"]["host"].split(".")[0]: d.get("weight", 100)
        for d in http[0].get("route") or []
    }


def vs_mirror(k: Cluster) -> tuple[str, float] | None:
    http = ((route(k, ISTIO).get("spec") or {}).get("http") or [{}])[0]
    if not http.get("mirror"):
        return None
    return http["mirror"]["host"].split(".")[0], http["mirrorPercentage"]["value"]


def http_weights(k: Cluster) -> dict[str, int]:
    rules = (route(k, GATEWAY).get("spec") or {}).get("rules") or [{}]
    return {b["name"]: b.get("weight", 1) for b in rules[0].get("backendRefs") or []}


def test_istio_canary_walks_the_virtualservice_weights_then_promotes(
    api: client.ApiClient, namespace: str, operator: Path
) -> None:
    k = Cluster(api, namespace)
    steps = [{"weight": 30, "pause": "3s"}, {"weight": 60, "pause": "3s"}]
    model = model_body(router="istio", canary={"steps": steps})
    k.start_stable(model, release_body("fraud-v1", "v1"))
    wait_for(
        lambda: vs_weights(k) == {"fraud-fraud-v1": 100},
        timeout=CONVERGE_SECONDS,
        what="the VirtualService to send everything to v1 at rest",
    )
    k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="canary"))
    seen: list[dict[str, int]] = []

    def record() -> bool:
        weights = vs_weights(k)
        if not seen or seen[-1] != weights:
            seen.append(weights)
        return k.release_status("fraud-v2").get("phase") == "Succeeded"

    wait_for(record, timeout=CONVERGE_SECONDS * 2, what="v2 promoted", interval=0.2)
    assert {"fraud-fraud-v1": 70, "fraud-fraud-v2": 30} in seen
    assert {"fraud-fraud-v1": 40, "fraud-fraud-v2": 60} in seen
    wait_for(
        lambda: vs_weights(k) == {"fraud-fraud-v2": 100},
        timeout=CONVERGE_SECONDS,
        what="everything to v2 after the promotion",
    )
    # Behind a route, the model's own Service reaches the stable only.
    service = k.core.read_namespaced_service("fraud", namespace)
    assert service.spec.selector == {c.LABEL_MODEL: "fraud", c.LABEL_RELEASE: "fraud-v2"}
    # Each release's own Service selects only its pods.
    mine = k.core.read_namespaced_service("fraud-fraud-v2", namespace).spec.selector
    assert mine[c.LABEL_RELEASE] == "fraud-v2"
    assert route(k, ISTIO)["metadata"]["ownerReferences"][0]["kind"] == c.KIND_DEPLOYMENT


def test_istio_shadow_mirrors_then_ends_evaluated_without_serving_anyone(
    api: client.ApiClient, namespace: str, operator: Path
) -> None:
    k = Cluster(api, namespace)
    k.start_stable(model_body(router="istio"), release_body("fraud-v1", "v1"))
    shadow = {"mirrorPercent": 40, "duration": "4s"}
    k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="shadow", shadow=shadow))
    wait_for(
        lambda: vs_mirror(k) == ("fraud-fraud-v2", 40.0),
        timeout=CONVERGE_SECONDS,
        what="40 % of requests mirrored to v2",
    )
    assert vs_weights(k) == {"fraud-fraud-v1": 100}  # users see only v1's answers
    status = k.wait_phase("fraud-v2", "Evaluated", timeout=CONVERGE_SECONDS * 2)
    assert "shadow passed" in status["message"]
    wait_for(
        lambda: vs_mirror(k) is None and vs_weights(k) == {"fraud-fraud-v1": 100},
        timeout=CONVERGE_SECONDS,
        what="the mirror removed after the verdict",
    )
    assert k.model_status()["stableRelease"] == "fraud-v1"
    v2 = k.deployments().get("fraud-fraud-v2")
    assert v2 is None or not v2.spec.replicas


def test_shadow_on_the_replicas_router_is_refused_at_once_with_the_reason(
    api: client.ApiClient, namespace: str, operator: Path
) -> None:
    k = Cluster(api, namespace)
    k.start_stable(model_body(), release_body("fraud-v1", "v1"))
    k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="shadow"))
    status = k.wait_phase("fraud-v2", "Failed")
    assert "needs mirror, which router 'replicas' cannot do" in status["message"]
    assert "fraud-fraud-v2" not in k.deployments()


class Gateway:
    """Plays the Gateway controller for the model's HTTPRoute: for each new generation it
    writes into the route's status what a Gateway would, as ``mode`` says at that moment:
    ``accept``, ``refuse`` (Accepted=False NotAllowedByListeners), or ``silent`` (writes
    nothing: the last answer stays, for an older generation, as when a controller stops
    or hangs); each generation is answered ``delay`` seconds after it was first seen (a
    slow data plane). ``answered`` maps each generation answered to how."""

    def __init__(self, k: Cluster, mode: str = "accept", delay: float = 0.0) -> None:
        self.k = k
        self.mode = mode
        self.delay = delay
        self.answered: dict[int, str] = {}
        self._seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-gateway", daemon=True)

    def __enter__(self) -> Gateway:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def accepted_generation(self) -> int | None:
        """The latest generation this Gateway accepted."""
        taken = [g for g, how in self.answered.items() if how == "accept"]
        return max(taken) if taken else None

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            mode = self.mode
            body = route(self.k, GATEWAY)
            if not body or mode == "silent":
                continue
            generation = body["metadata"]["generation"]
            seen = self._seen.setdefault(generation, time.monotonic())
            if time.monotonic() - seen < self.delay:
                continue
            parents = (body.get("status") or {}).get("parents") or []
            done = parents and all(
                cond.get("observedGeneration") == generation
                for p in parents
                for cond in p["conditions"]
            )
            if done:
                continue
            accept = mode == "accept"
            status = "True" if accept else "False"
            reason = "Accepted" if accept else "NotAllowedByListeners"
            conditions = [
                {
                    "type": kind,
                    "status": status if kind == "Accepted" else "True",
                    "reason": reason if kind == "Accepted" else "ResolvedRefs",
                    "message": "test gateway" if accept else "listener does not allow routes here",
                    "observedGeneration": generation,
                    "lastTransitionTime": "2026-11-29T00:00:00Z",
                }
                for kind in ("Accepted", "ResolvedRefs")
            ]
            body["status"] = {
                "parents": [
                    {
                        "parentRef": ref,
                        "controllerName": "example.com/test-gateway",
                        "conditions": conditions,
                    }
                    for ref in body["spec"]["parentRefs"]
                ]
            }
            try:
                self.k.custom.replace_namespaced_custom_object_status(
                    *GATEWAY[:2], self.k.ns, GATEWAY[2], "fraud", body
                )
            except ApiException:
                continue  # a newer generation: answer that one next time
            self.answered[generation] = mode


@contextmanager
def gateway_answers(k: Cluster, accept: bool) -> Iterator[Gateway]:
    """Write what a Gateway controller would into the HTTPRoute's status, for each
    generation, until the block ends."""
    with Gateway(k, "accept" if accept else "refuse") as gateway:
        yield gateway


GATEWAY_SPEC = {"parentRefs": [{"name": "web", "sectionName": "http"}], "hostnames": ["fraud.test"]}


def test_gatewayapi_canary_waits_for_its_gateway_then_promotes(
    api: client.ApiClient, namespace: str, operator: Path
) -> None:
    k = Cluster(api, namespace)
    steps = [{"weight": 25, "pause": "2s"}]
    model = model_body(router="gatewayAPI", gatewayAPI=GATEWAY_SPEC, canary={"steps": steps})
    k.start_stable(model, release_body("fraud-v1", "v1"))
    wait_for(
        lambda: http_weights(k) == {"fraud-fraud-v1": 100},
        timeout=CONVERGE_SECONDS,
        what="the HTTPRoute to send everything to v1 at rest",
    )
    k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="canary"))
    status = wait_for(
        lambda: (
            "no status from its data plane"
            in ((s := k.release_status("fraud-v2")).get("message") or "")
            and s
        ),
        timeout=CONVERGE_SECONDS,
        what="the canary to wait for the Gateway to accept its route",
    )
    assert status["weight"] == 0  # not claimed before the Gateway took it
    assert http_weights(k) == {"fraud-fraud-v1": 75, "fraud-fraud-v2": 25}
    with gateway_answers(k, accept=True):
        wait_for(
            lambda: k.release_status("fraud-v2").get("weight") == 25,
            timeout=CONVERGE_SECONDS,
            what="weight 25 read back once accepted",
        )
        assert "accepted" in (k.release_status("fraud-v2").get("route") or "")
        k.wait_phase("fraud-v2", "Succeeded", timeout=CONVERGE_SECONDS * 2)
    assert http_weights(k) == {"fraud-fraud-v2": 100}


def test_gatewayapi_route_refused_by_its_gateway_says_why_and_rolls_back(
    api: client.ApiClient, namespace: str, operator: Path
) -> None:
    k = Cluster(api, namespace)
    model = model_body(router="gatewayAPI", gatewayAPI=GATEWAY_SPEC, progressDeadline="8s")
    with gateway_answers(k, accept=True):
        k.start_stable(model, release_body("fraud-v1", "v1"))
    with gateway_answers(k, accept=False):
        k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="canary"))
        wait_for(
            lambda: "NotAllowedByListeners" in (k.release_status("fraud-v2").get("message") or ""),
            timeout=CONVERGE_SECONDS,
            what="the refusal in the release's message",
        )
        status = k.wait_phase("fraud-v2", "RolledBack", timeout=CONVERGE_SECONDS)
    assert "NotAllowedByListeners" in status["message"] or "progressDeadline" in status["message"]
    wait_for(
        lambda: http_weights(k) == {"fraud-fraud-v1": 100},
        timeout=CONVERGE_SECONDS,
        what="everything back to v1",
    )


def test_a_model_on_gatewayapi_without_its_gateway_is_refused_at_admission(
    api: client.ApiClient, namespace: str
) -> None:
    k = Cluster(api, namespace)
    try:
        k.create(c.PLURAL_DEPLOYMENT, model_body(router="gatewayAPI"))
    except ApiException as error:
        assert error.status == 422
        assert "router gatewayAPI needs spec.gatewayAPI.parentRefs" in str(error.body)
    else:
        raise AssertionError("the API server took a gatewayAPI model without a Gateway")
