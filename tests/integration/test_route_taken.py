"""A traffic change counts only once the Gateway took it, against the real API server.

The test plays the Gateway controller (``Gateway`` in test_routers.py): it
accepts each new generation of the HTTPRoute, or goes silent from some
generation on, as a controller that restarts, hangs or rejects a config
would. What must hold (DESIGN practice 12): nothing claims a switch, nothing
succeeds and nothing the last accepted generation may still send requests to
is scaled down until every parent Gateway accepted the route's current
generation; past progressDeadline a blue-green switch goes back to the stable
(which never shrank) with the generation named; ``slipway rollback --to``
moves the route first and keeps both releases at full size, saying why,
until the Gateway took it. The stable-serving invariant (tests/invariants.py)
watches every test here too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from slipway.api import constants as c
from tests.cluster import CONVERGE_SECONDS, Cluster, model_body, release_body
from tests.integration.test_controls import slipway
from tests.integration.test_routers import GATEWAY, GATEWAY_SPEC, Gateway, http_weights, route
from tests.kube import wait_for


@dataclass(frozen=True)
class RouteNow:
    """The HTTPRoute as read back: its generation, weights, and whether every parent
    accepted that very generation."""

    generation: int
    weights: dict[str, int]
    accepted: bool


def route_now(k: Cluster) -> RouteNow | None:
    body = route(k, GATEWAY)
    if not body:
        return None
    generation = body["metadata"]["generation"]
    parents = (body.get("status") or {}).get("parents") or []
    accepted = bool(parents) and all(
        any(
            cond["type"] == "Accepted"
            and cond["status"] == "True"
            and cond.get("observedGeneration") == generation
            for cond in parent["conditions"]
        )
        for parent in parents
    )
    rules = (body.get("spec") or {}).get("rules") or [{}]
    weights = {b["name"]: b.get("weight", 1) for b in rules[0].get("backendRefs") or []}
    return RouteNow(generation, weights, accepted)


def replicas(k: Cluster, release: str) -> int | None:
    """The release's Deployment's desired replicas (None once deleted)."""
    found = k.deployments().get(f"fraud-{release}")
    return None if found is None else int(found.spec.replicas or 0)


@dataclass
class Watch:
    """What was seen while polling: every status message and every route generation."""

    messages: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    routes: list[RouteNow] = field(default_factory=list)

    def saw(self, message: str | None) -> None:
        if message and (not self.messages or self.messages[-1] != message):
            self.messages.append(message)

    def route(self, now: RouteNow | None) -> None:
        if now is not None and (not self.routes or self.routes[-1] != now):
            self.routes.append(now)


def bluegreen_on_gateway(k: Cluster, gateway: Gateway, progress_deadline: str) -> RouteNow:
    """v1 stable on gatewayAPI, v2's blue-green preview passed and waiting for a promote;
    the route as the Gateway last accepted it."""
    spec = {"autoPromotion": False, "scaleDownDelay": "2s"}
    model = model_body(
        router="gatewayAPI",
        gatewayAPI=GATEWAY_SPEC,
        blueGreen=spec,
        progressDeadline=progress_deadline,
    )
    k.start_stable(model, release_body("fraud-v1", "v1"))
    k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="blueGreen"))
    wait_for(
        lambda: "slipway promote" in (k.release_status("fraud-v2").get("message") or ""),
        timeout=CONVERGE_SECONDS,
        what="the preview to pass and wait for `slipway promote`",
    )
    now = wait_for(
        lambda: (r := route_now(k)) is not None and r.accepted and r,
        timeout=CONVERGE_SECONDS,
        what="the preview's route accepted",
    )
    assert now.weights == {"fraud-fraud-v1": 100}  # every request with v1, a copy to v2
    return now


def test_a_switch_the_gateway_never_takes_is_not_claimed_and_goes_back_past_the_deadline(
    api: client.ApiClient, namespace: str, operator: Path, kubeconfig: str
) -> None:
    k = Cluster(api, namespace)
    with Gateway(k) as gateway:
        accepted = bluegreen_on_gateway(k, gateway, progress_deadline="10s")
        gateway.mode = "silent"  # the Gateway stops answering from here on
        slipway(kubeconfig, "promote", "fraud-v2", "-n", namespace)
        seen = Watch()
        began = time.monotonic()

        def until_rolled_back() -> dict[str, Any] | None:
            # Deployments first, then the route: a shrunk v1 read here means the route read
            # after it could only be newer, so a violation is never a race of the reads.
            v1 = replicas(k, "fraud-v1")
            now = route_now(k)
            seen.route(now)
            status = k.release_status("fraud-v2")
            seen.saw(status.get("message"))
            if v1 != 2:
                seen.problems.append(f"v1 at {v1} pods while the route is {now}")
            if status.get("phase") == "Succeeded" or status.get("switchedAt"):
                seen.problems.append(f"claimed a switch the Gateway never took: {status}")
            if k.model_status().get("stableRelease") != "fraud-v1":
                seen.problems.append("v2 recorded as the stable")
            return status if status.get("phase") == "RolledBack" else None

        status = wait_for(
            until_rolled_back,
            timeout=CONVERGE_SECONDS * 2,
            what="the switch to go back past progressDeadline",
            interval=0.2,
        )
        took = time.monotonic() - began
        assert seen.problems == []
        # The switch was written as a new generation the Gateway never answered.
        switch = next(r for r in seen.routes if r.weights == {"fraud-fraud-v2": 100})
        assert switch.generation > accepted.generation and not switch.accepted
        assert gateway.accepted_generation() == accepted.generation
        waiting = [m for m in seen.messages if m.startswith("switching")]
        assert waiting, seen.messages
        assert f"HTTPRoute 'fraud' generation {switch.generation} has no status" in waiting[-1]
        assert f"Gateway web last answered generation {accepted.generation}" in waiting[-1]
        assert "'fraud-v1' may still get every request and stays at full size" in waiting[-1]
        # Well past the 2 s window: without the switch live there was no window to end.
        assert took > 8, f"rolled back after {took:.1f}s, before progressDeadline 10s"
        message = status["message"]
        assert "not taken by its data plane within progressDeadline 10s" in message
        assert f"generation {switch.generation}" in message
        ready = next(cond for cond in status["conditions"] if cond["type"] == "Ready")
        assert ready["reason"] == "ProgressDeadlineExceeded"
        # The route goes back to v1; with the Gateway still silent v2 keeps its pods (the
        # last accepted generation sent nothing to it, but the operator cannot know which
        # generation is live), and v1 never stopped.
        wait_for(
            lambda: http_weights(k) == {"fraud-fraud-v1": 100},
            timeout=CONVERGE_SECONDS,
            what="the route written back to v1",
        )
        time.sleep(1.5)
        assert replicas(k, "fraud-v2") == 2 and replicas(k, "fraud-v1") == 2
        # The Gateway answers again: the route back is accepted and v2 is pruned.
        gateway.mode = "accept"
        wait_for(
            lambda: replicas(k, "fraud-v2") is None,
            timeout=CONVERGE_SECONDS,
            what="v2 pruned once the accepted route no longer names it",
        )
        assert replicas(k, "fraud-v1") == 2
        assert (r := route_now(k)) is not None and r.accepted
        assert r.weights == {"fraud-fraud-v1": 100}


def test_a_switch_taken_late_is_claimed_only_then_and_the_old_stable_goes_after_its_window(
    api: client.ApiClient, namespace: str, operator: Path, kubeconfig: str
) -> None:
    k = Cluster(api, namespace)
    with Gateway(k) as gateway:
        bluegreen_on_gateway(k, gateway, progress_deadline="30s")
        gateway.mode = "silent"
        slipway(kubeconfig, "promote", "fraud-v2", "-n", namespace)
        switch = wait_for(
            lambda: (r := route_now(k)) is not None and r.weights == {"fraud-fraud-v2": 100} and r,
            timeout=CONVERGE_SECONDS,
            what="the switch written",
        )
        time.sleep(3)  # longer than the 2 s window: nothing may end it while unanswered
        status = k.release_status("fraud-v2")
        assert status["phase"] == "Progressing" and "switchedAt" not in status
        assert f"generation {switch.generation} has no status" in status["message"]
        assert replicas(k, "fraud-v1") == 2
        answered = time.time()
        gateway.mode = "accept"
        status = wait_for(
            lambda: (s := k.release_status("fraud-v2")).get("switchedAt") and s,
            timeout=CONVERGE_SECONDS,
            what="the switch claimed once the Gateway accepted it",
        )
        assert "every request goes to 'fraud-v2'" in status["message"]
        assert replicas(k, "fraud-v1") == 2  # the window starts now
        done = k.wait_phase("fraud-v2", "Succeeded")
        claimed = done["switchedAt"]
        assert claimed >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(answered - 1))
        wait_for(
            lambda: replicas(k, "fraud-v1") == 0,
            timeout=CONVERGE_SECONDS,
            what="v1 scaled to zero after the window",
        )


def two_succeeded(k: Cluster, gateway: Gateway) -> None:
    """v1 then v2 (direct) Succeeded on gatewayAPI: v2 the stable, v1 kept at zero."""
    model = model_body(router="gatewayAPI", gatewayAPI=GATEWAY_SPEC, progressDeadline="20s")
    k.start_stable(model, release_body("fraud-v1", "v1"))
    k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="direct"))
    k.wait_phase("fraud-v2", "Succeeded")
    wait_for(
        lambda: (
            replicas(k, "fraud-v1") == 0
            and (r := route_now(k)) is not None
            and r.accepted
            and r.weights == {"fraud-fraud-v2": 100}
        ),
        timeout=CONVERGE_SECONDS,
        what="v2 the stable behind an accepted route, v1 at zero",
    )


def test_rollback_to_v1_with_a_healthy_gateway_moves_the_route_before_v2_shrinks(
    api: client.ApiClient, namespace: str, operator: Path, kubeconfig: str
) -> None:
    k = Cluster(api, namespace)
    with Gateway(k) as gateway:
        two_succeeded(k, gateway)
        # Healthy but not instant: each generation is accepted 1.5 s after it is written,
        # so a v2 scaled down before the route to v1 was accepted is seen, not raced past.
        gateway.delay = 1.5
        slipway(kubeconfig, "rollback", "fraud", "--to", "fraud-v1", "-n", namespace)
        seen = Watch()

        def until_done() -> bool:
            v2 = replicas(k, "fraud-v2")
            now = route_now(k)
            seen.route(now)
            seen.saw(k.model_status().get("message"))
            if v2 is not None and v2 < 2:
                on_v1 = now is not None and now.weights == {"fraud-fraud-v1": 100}
                if not (on_v1 and now is not None and now.accepted):
                    seen.problems.append(f"v2 at {v2} pods while the route is {now}")
            return v2 == 0 and k.model_status().get("stableRelease") == "fraud-v1"

        wait_for(until_done, timeout=CONVERGE_SECONDS, what="the rollback to v1", interval=0.1)
        assert seen.problems == []
        moved = [r for r in seen.routes if r.weights == {"fraud-fraud-v1": 100}]
        assert moved and moved[-1].accepted
        assert not moved[0].accepted  # written first, accepted later: the wait was real
        assert gateway.accepted_generation() == moved[-1].generation
        assert replicas(k, "fraud-v1") == 2


def test_rollback_to_v1_with_a_silent_gateway_keeps_both_up_and_says_why(
    api: client.ApiClient, namespace: str, operator: Path, kubeconfig: str
) -> None:
    k = Cluster(api, namespace)
    with Gateway(k) as gateway:
        two_succeeded(k, gateway)
        accepted = gateway.accepted_generation()
        gateway.mode = "silent"
        slipway(kubeconfig, "rollback", "fraud", "--to", "fraud-v1", "-n", namespace)
        moved = wait_for(
            lambda: (r := route_now(k)) is not None and r.weights == {"fraud-fraud-v1": 100} and r,
            timeout=CONVERGE_SECONDS,
            what="the route to v1 written",
        )
        [why] = wait_for(  # (a bare string reads as "not yet" to wait_for)
            lambda: (
                [m]
                if "both stay at full size" in (m := k.model_status().get("message") or "")
                else None
            ),
            timeout=CONVERGE_SECONDS,
            what="the ModelDeployment saying why the rollback waits",
        )
        assert f"HTTPRoute 'fraud' generation {moved.generation} has no status" in why
        assert f"Gateway web last answered generation {accepted}" in why
        assert "'fraud-v2' and 'fraud-v1' both stay at full size" in why
        # However long it stays silent: both up, v2 still the stable.
        for _ in range(10):
            assert replicas(k, "fraud-v2") == 2 and replicas(k, "fraud-v1") == 2
            assert k.model_status()["stableRelease"] == "fraud-v2"
            time.sleep(0.4)
        events = [e.message for e in k.events_for("fraud") if e.reason == "Rollback"]
        assert any("both stay at full size" in (m or "") for m in events), events
        # The Gateway answers: recorded, then v2 goes.
        gateway.mode = "accept"
        wait_for(
            lambda: (
                k.model_status().get("stableRelease") == "fraud-v1" and replicas(k, "fraud-v2") == 0
            ),
            timeout=CONVERGE_SECONDS,
            what="the rollback finished once the Gateway took the route",
        )
        assert (
            (r := route_now(k)) is not None and r.accepted and r.weights == {"fraud-fraud-v1": 100}
        )
        assert replicas(k, "fraud-v1") == 2
        assert not k.model_status().get("message")
