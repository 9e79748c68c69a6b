"""Every router honours the same contract (run against each entry of traffic.ROUTERS).

A tiny in-memory cluster carries out the router's actions: pods become ready
at once, Services and route objects are stored, and a Gateway accepts every
HTTPRoute (what a data plane would do). Then the router is asked again:

- the share (or mirrored share) read back is the share asked for;
- asking again changes nothing (what a restarted operator does);
- a switch sends every request to one release, and back, and is claimed
  (``reached``) only once read back from the cluster;
- a switch the data plane has not taken (a silent Gateway) is never reached,
  names the generation it waits for, and leaves the old stable routed;
- cleaning up after a rollback leaves the stable serving 100 % with no mirror;
- at rest, with no release in flight, nothing is written.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from slipway.api.models import ModelDeployment
from slipway.api.phases import Router
from slipway.kube.children import build_service
from slipway.kube.fingerprint import service_fingerprint
from slipway.kube.observe import DeploymentState, LiveRoute
from slipway.rollout.core import (
    Action,
    ApplyObject,
    ScaleDeployment,
    SetServing,
    Situation,
)
from slipway.rollout.outcomes import roll_back
from slipway.traffic import ROUTE_KINDS, ROUTERS, Capability, Placement
from slipway.traffic.routes import service_name
from tests.unit.factories import T0, deployment, model, release

SPEC: dict[Router, dict[str, Any]] = {
    Router.REPLICAS: {},
    Router.GATEWAY_API: {
        "router": "gatewayAPI",
        "gatewayAPI": {"parentRefs": [{"name": "web", "sectionName": "http"}]},
    },
    Router.ISTIO: {"router": "istio", "istio": {"hosts": ["fraud.example.com"]}},
}
MIRRORING = [r for r, ops in ROUTERS.items() if Capability.MIRROR in ops.capabilities]


def accepted(body: dict[str, Any], generation: int = 1, answered: int = 1) -> dict[str, Any]:
    """What a Gateway writes back: every parent accepted generation ``answered`` (the
    current one, unless it went silent)."""
    live = copy.deepcopy(body)
    live["metadata"]["generation"] = generation
    if live["kind"] == "HTTPRoute":
        live["status"] = {
            "parents": [
                {
                    "parentRef": ref,
                    "conditions": [
                        {"type": kind, "status": "True", "observedGeneration": answered}
                        for kind in ("Accepted", "ResolvedRefs")
                    ],
                }
                for ref in live["spec"]["parentRefs"]
            ]
        }
    return live


@dataclass
class Cluster:
    """Deployments, Services, the route and the model's pin, as the actions leave them."""

    router: Router
    pods: dict[str, DeploymentState]
    services: dict[str, str] = field(default_factory=dict)
    route: LiveRoute | None = None
    serving: str | None = None
    silent: bool = False
    """The Gateway stopped answering: new generations get no status."""
    generation: int = 0
    answered: int = 0

    def model(self) -> ModelDeployment:
        md = model(stable="fraud-v1", active="fraud-v2", replicas=10, **SPEC[self.router])
        md.status.serving = self.serving
        return md

    def situation(self) -> Situation:
        return Situation(
            release=release(strategy="canary"),
            model=self.model(),
            siblings=(),
            deployments=self.pods,
            now=T0,
            route=self.route,
            services=self.services,
        )

    def carry_out(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SetServing):
                self.serving = action.release
            elif isinstance(action, ApplyObject):
                self._apply(action.body)
            elif isinstance(action, ScaleDeployment):
                name = next(r for r, d in self.pods.items() if d.name == action.name)
                self.pods[name] = replace(
                    self.pods[name],
                    replicas=action.replicas,
                    ready_replicas=action.replicas,
                    available_replicas=action.replicas,
                    updated_replicas=action.replicas,
                )

    def _apply(self, body: dict[str, Any]) -> None:
        kind = body["kind"]
        if kind == "Deployment":
            name = body["metadata"]["labels"]["slipway.dev/release"]
            size = body["spec"]["replicas"]
            self.pods[name] = deployment(name, ready=size, replicas=size)
        elif kind == "Service":
            self.services[body["metadata"]["name"]] = service_fingerprint(body)
        else:
            self.generation += 1
            self.answered = self.answered if self.silent else self.generation
            live = accepted(body, self.generation, self.answered)
            live["metadata"]["ownerReferences"] = body["metadata"]["ownerReferences"]
            self.route = ROUTE_KINDS[kind][3](live)

    def share(self, release: str) -> int:
        """The release's share of live requests, as the data plane would split them."""
        md = self.model()
        if self.route is not None:
            return self.route.share(service_name(md, release))
        if self.serving is not None:
            return 100 if self.serving == release else 0
        ready = {r: d.ready_replicas for r, d in self.pods.items()}
        total = sum(ready.values())
        return round(100 * ready.get(release, 0) / total) if total else 0

    def mirrored(self) -> int:
        return self.route.mirror[1] if self.route and self.route.mirror else 0


def fresh(router: Router) -> Cluster:
    return Cluster(router, {"fraud-v1": deployment("fraud-v1", ready=10, replicas=10)})


def place(cluster: Cluster, weight: int) -> Placement:
    situation = cluster.situation()
    assert situation.model is not None
    return ROUTERS[cluster.router].place(situation, situation.model, weight)


def settle(cluster: Cluster, ask: Any, passes: int = 4) -> Placement:
    """Ask and carry out until nothing is left to do (pods first, then the route, as the
    router orders them); then ask once more: what a restarted operator would see."""
    for _ in range(passes):
        placement: Placement = ask(cluster)
        if not placement.actions:
            return placement
        cluster.carry_out(placement.actions)
    again: Placement = ask(cluster)
    return again


@pytest.mark.parametrize("router", list(ROUTERS))
@pytest.mark.parametrize("weight", [10, 25, 50, 75, 90])
def test_the_share_read_back_is_the_share_asked_for_and_asking_again_changes_nothing(
    router: Router, weight: int
) -> None:
    cluster = fresh(router)
    first = place(cluster, weight)
    assert first.actions and not first.reached
    cluster.carry_out(first.actions)
    # No live request goes to the candidate before its pods were ready.
    assert cluster.share("fraud-v2") == 0 or router is Router.REPLICAS
    again = settle(cluster, lambda c: place(c, weight))
    assert again.reached
    assert again.actions == []  # a restarted operator re-deciding writes nothing
    assert abs(again.achieved - weight) <= 5  # 10 replicas: steps of 10 %, rounded
    assert abs(cluster.share("fraud-v2") - weight) <= 5


@pytest.mark.parametrize("router", list(ROUTERS))
def test_cleanup_after_a_rollback_leaves_the_stable_serving_everything_with_no_mirror(
    router: Router,
) -> None:
    cluster = fresh(router)
    ops = ROUTERS[router]
    if ops.mirror is not None:
        mirror = ops.mirror
        settle(cluster, lambda c: Placement(mirror(c.situation(), c.model(), 30).actions))
        assert cluster.mirrored() == 30
    settle(cluster, lambda c: place(c, 50))
    situation = cluster.situation()
    md = cluster.model()
    status = situation.release.status.model_copy(deep=True)
    cluster.carry_out(roll_back(situation, status, md, [], "Test", "test").actions)
    assert cluster.share("fraud-v1") == 100
    assert cluster.share("fraud-v2") == 0
    assert cluster.mirrored() == 0
    # At rest (no release in flight) the router keeps it so and writes nothing more.
    rest = cluster.model()
    rest.status.active_release = None
    assert ops.at_rest(rest, cluster.route, cluster.services) == []


@pytest.mark.parametrize("router", list(ROUTERS))
def test_a_switch_sends_every_request_to_one_release_and_back(router: Router) -> None:
    cluster = fresh(router)
    cluster.pods["fraud-v2"] = deployment("fraud-v2", ready=10, replicas=10)
    ops = ROUTERS[router]
    for target in ("fraud-v1", "fraud-v2", "fraud-v1"):
        written = ops.switch(cluster.situation(), cluster.model(), target)
        assert written.actions and not written.reached  # not claimed before read back
        cluster.carry_out(written.actions)
        assert cluster.share(target) == 100
        again = ops.switch(cluster.situation(), cluster.model(), target)
        assert again.actions == [] and again.reached and again.achieved == 100
        assert again.note == ""
        # Restoring the release that has everything is already done.
        restored = ops.restore(cluster.situation(), cluster.model(), target)
        assert restored.actions == [] and restored.reached


def test_a_switch_a_silent_gateway_never_took_is_not_reached_and_names_the_generation() -> None:
    cluster = fresh(Router.GATEWAY_API)
    cluster.pods["fraud-v2"] = deployment("fraud-v2", ready=10, replicas=10)
    ops = ROUTERS[Router.GATEWAY_API]
    settle(cluster, lambda c: ops.switch(c.situation(), c.model(), "fraud-v1"))
    cluster.silent = True
    cluster.carry_out(ops.switch(cluster.situation(), cluster.model(), "fraud-v2").actions)
    assert cluster.share("fraud-v2") == 100  # the spec says so ...
    waiting = ops.switch(cluster.situation(), cluster.model(), "fraud-v2")
    assert waiting.actions == [] and not waiting.reached  # ... the Gateway did not take it
    assert waiting.note == (
        "HTTPRoute 'fraud' generation 2 has no status from its data plane yet"
        " (Gateway web last answered generation 1)"
    )
    # The generation it answered sent everything to v1: v1 is still routed.
    md = cluster.model()
    assert "fraud-v1" in ops.routed(md, cluster.route, ["fraud-v1", "fraud-v2"])
    # Once it answers, the switch is live and v1 is no longer routed.
    cluster.silent = False
    cluster.carry_out(ops.switch(cluster.situation(), md, "fraud-v1").actions)
    cluster.carry_out(ops.switch(cluster.situation(), md, "fraud-v2").actions)
    live = ops.switch(cluster.situation(), md, "fraud-v2")
    assert live.reached
    assert ops.routed(md, cluster.route, ["fraud-v1", "fraud-v2"]) == {"fraud-v2"}


@pytest.mark.parametrize("router", list(ROUTERS))
def test_a_switch_changed_behind_slipways_back_is_not_reached(router: Router) -> None:
    cluster = fresh(router)
    cluster.pods["fraud-v2"] = deployment("fraud-v2", ready=10, replicas=10)
    ops = ROUTERS[router]
    settle(cluster, lambda c: ops.switch(c.situation(), c.model(), "fraud-v2"))
    # Someone points it back at v1 (a Service or a route edited by hand).
    md = cluster.model()
    if router is Router.REPLICAS:
        cluster.carry_out([ApplyObject(build_service(md, "fraud-v1"))])
    else:
        cluster.carry_out(ops.switch(cluster.situation(), md, "fraud-v1").actions)
        cluster.serving = "fraud-v2"
    undone = ops.switch(cluster.situation(), cluster.model(), "fraud-v2")
    assert not undone.reached and undone.note


@pytest.mark.parametrize("router", MIRRORING)
@pytest.mark.parametrize("percent", [1, 10, 50, 100])
def test_the_mirror_read_back_is_the_mirror_asked_for(router: Router, percent: int) -> None:
    cluster = fresh(router)
    mirror = ROUTERS[router].mirror
    assert mirror is not None
    again = settle(cluster, lambda c: mirror(c.situation(), c.model(), percent))
    assert again.reached and again.actions == []
    assert again.achieved == percent == cluster.mirrored()
    assert cluster.share("fraud-v1") == 100  # users see only the stable's answers


def test_the_routers_that_cannot_mirror_say_so() -> None:
    assert ROUTERS[Router.REPLICAS].mirror is None
    assert Capability.MIRROR not in ROUTERS[Router.REPLICAS].capabilities


@pytest.mark.parametrize("router", [r for r in ROUTERS if ROUTERS[r].route_kind])
def test_a_route_the_data_plane_refuses_is_never_reached_and_says_why(router: Router) -> None:
    cluster = fresh(router)
    settle(cluster, lambda c: place(c, 25))
    assert cluster.route is not None
    cluster.route = replace(cluster.route, accepted=False, why="Gateway web: NotAllowedByListeners")
    refused = place(cluster, 25)
    assert not refused.reached
    assert "not accepted" in refused.note and "NotAllowedByListeners" in refused.note
    assert refused.achieved == 0  # a refused route carries nothing to the candidate
