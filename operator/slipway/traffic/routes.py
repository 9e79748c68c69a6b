"""What the routers that own a route object share (gatewayAPI, istio).

Every release gets its own Service (``<model>-<release>``, selecting only its
pods) and the model gets one route object named after it whose backends are
those Services. A traffic plan (weights per release, and an optional mirror)
becomes that route; what is live is read back from it, so status reports the
weights and mirror the data plane actually has, not what was asked for.

Pod counts do not carry the split here: the stable stays at full size for the
whole rollout (a rollback is one route change to pods that never stopped) and
the candidate is sized for its share. A router module supplies only its
route's kind, how to build it from a plan, and how to read it back.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from slipway.api import constants as c
from slipway.api.models import ModelDeployment
from slipway.kube.children import (
    build_deployment,
    build_release_service,
    deployment_name,
    owner_reference,
)
from slipway.kube.fingerprint import service_fingerprint
from slipway.kube.observe import LiveRoute
from slipway.rollout.core import Action, ApplyObject, ScaleDeployment, Situation, merge
from slipway.traffic.base import Capability, Placement, RouterOps

CAPABILITIES: Final = frozenset({Capability.WEIGHTS, Capability.MIRROR, Capability.SWITCH})
FINGERPRINT: Final = f"{c.GROUP}/route-fingerprint"
"""Annotation on the route: a hash of the spec Slipway applied (the live spec carries
defaults the API server adds, so it cannot be compared as it is)."""


@dataclass(frozen=True)
class RoutePlan:
    """Where live requests go: weights per release, and an optional mirror."""

    weights: tuple[tuple[str, int], ...]
    """(release, weight) in route order, stable first."""
    mirror: tuple[str, int] | None = None
    """(release, percent) copied to a release whose answers are discarded."""


BuildRoute = Callable[[ModelDeployment, RoutePlan, dict[str, Any]], dict[str, Any]]
"""A router's route object for a plan, given the metadata every route carries."""
ObserveRoute = Callable[[Mapping[str, Any]], LiveRoute]


def service_name(model: ModelDeployment, release: str) -> str:
    """The release's own Service (the same name as its Deployment)."""
    return deployment_name(model.metadata.name, release)


def route_body(model: ModelDeployment, plan: RoutePlan, build: BuildRoute) -> dict[str, Any]:
    """The route object for ``plan``, with its owner, labels and spec fingerprint."""
    metadata: dict[str, Any] = {
        "name": model.metadata.name,
        "namespace": model.metadata.namespace,
        "labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE, c.LABEL_MODEL: model.metadata.name},
        "ownerReferences": [owner_reference(model)],
    }
    body = build(model, plan, metadata)
    digest = hashlib.sha256(json.dumps(body["spec"], sort_keys=True).encode()).hexdigest()[:16]
    body["metadata"]["annotations"] = {FINGERPRINT: digest}
    return body


def ensure(
    model: ModelDeployment,
    plan: RoutePlan,
    route: LiveRoute | None,
    services: Mapping[str, str],
    build: BuildRoute,
    observe: ObserveRoute,
) -> list[Action]:
    """The Services the plan names and the route itself, each only when not live as wanted."""
    actions = ensure_services(model, plan, services)
    body = route_body(model, plan, build)
    wanted = observe(body)
    if (
        route is None
        or route.fingerprint != wanted.fingerprint
        or route.owner_uid != model.metadata.uid
        or route.backends != wanted.backends
        or route.mirror != wanted.mirror
    ):
        actions.append(ApplyObject(body))
    return actions


def ensure_services(
    model: ModelDeployment, plan: RoutePlan, services: Mapping[str, str]
) -> list[Action]:
    """The Services of the releases the plan names, when missing or not as wanted."""
    actions: list[Action] = []
    releases = [r for r, _ in plan.weights] + ([plan.mirror[0]] if plan.mirror else [])
    for release in dict.fromkeys(releases):
        service = build_release_service(model, release)
        if services.get(service["metadata"]["name"]) != service_fingerprint(service):
            actions.append(ApplyObject(service))
    return actions


def live(route: LiveRoute | None, plan: RoutePlan, model: ModelDeployment, reports: bool) -> bool:
    """The route is live as planned and the data plane took it (when it ``reports``
    that in the route's status; else it has at least not refused it)."""
    if route is None or route.accepted is False or (reports and route.accepted is not True):
        return False
    wanted = [(service_name(model, r), w) for r, w in plan.weights if w > 0]
    have = [(name, w) for name, w in route.backends if w > 0]
    mirror = (service_name(model, plan.mirror[0]), plan.mirror[1]) if plan.mirror else None
    return have == wanted and route.mirror == mirror


def describe(route: LiveRoute | None, model: ModelDeployment) -> str | None:
    """The live route in words: weights per release, mirror, and whether it is accepted."""
    if route is None:
        return None
    prefix = f"{model.metadata.name}-"
    short = {name: name.removeprefix(prefix) for name, _ in route.backends}
    parts = [f"{short[name]} {weight}" for name, weight in route.backends]
    text = f"{route.kind} {route.name}: {', '.join(parts) or 'no backends'}"
    if route.mirror:
        text += f"; mirror {route.mirror[1]}% to {route.mirror[0].removeprefix(prefix)}"
    if route.accepted is True:
        text += "; accepted"
    elif route.accepted is False:
        text += f"; NOT accepted: {route.why}"
    elif route.why:
        text += f"; generation {route.generation} not answered yet: {route.why}"
    return text


def waiting(route: LiveRoute | None, model: ModelDeployment, planned: bool) -> str:
    """Why the route is not live as wanted yet, in words, naming the generation the data
    plane has not taken (``planned``: its spec is as wanted)."""
    if route is None:
        return f"the {model.metadata.name!r} route does not exist yet"
    if route.accepted is False:
        return f"{route.named} is not accepted: {route.why}"
    if not planned:
        return f"{route.named} does not have the new weights yet"
    why = f" ({route.why})" if route.why else ""
    return f"{route.named} has no status from its data plane yet{why}"


def _size(situation: Situation, model: ModelDeployment, release: str, pods: int) -> list[Action]:
    own = situation.deployments.get(release)
    if own is None:
        return [ApplyObject(build_deployment(model, situation.release, pods))]
    return [ScaleDeployment(own.name, pods)] if own.replicas != pods else []


def _stable_whole(situation: Situation, model: ModelDeployment) -> list[Action]:
    stable = model.status.stable_release
    own = situation.deployments.get(stable) if stable else None
    total = model.spec.replicas
    return [ScaleDeployment(own.name, total)] if own and own.replicas != total else []


def _ready(situation: Situation, release: str, pods: int) -> bool:
    """Enough of the release's pods are ready for its share (a shrinking one already is)."""
    own = situation.deployments.get(release)
    return own is not None and own.ready_replicas >= pods


def pods_for(model: ModelDeployment, percent: int) -> int:
    """Candidate pods for a share: enough for it, at least one, all at 100 %."""
    total = model.spec.replicas
    return total if percent >= 100 else max(1, math.ceil(total * percent / 100))


def make_ops(build: BuildRoute, observe: ObserveRoute, kind: str, reports: bool) -> RouterOps:
    """A route-owning router from its route's build and read-back; ``reports``: its data
    plane writes whether it accepted the route into the route's status."""

    def carries(route: LiveRoute | None) -> bool:
        """The live route carries requests (taken by the data plane, or not refused)."""
        return route is not None and (
            route.accepted is True or (not reports and route.accepted is None)
        )

    def known(route: LiveRoute | None, said: int | None) -> int:
        """While the data plane has not yet answered for a new generation of the route,
        the share is what it was (status keeps its last word); else nothing is live."""
        pending = route is not None and reports and route.accepted is None
        return (said or 0) if pending else 0

    def plan_for(model: ModelDeployment, release: str, weight: int) -> RoutePlan:
        stable = model.status.stable_release
        if stable is None or stable == release or weight >= 100:
            return RoutePlan(((release, 100),))
        return RoutePlan(((stable, 100 - weight), (release, weight)))

    def placed(
        situation: Situation, model: ModelDeployment, plan: RoutePlan, pods: int, achieved: int
    ) -> Placement:
        name = situation.release.metadata.name
        route = situation.route
        actions = _size(situation, model, name, pods) + _stable_whole(situation, model)
        ready = _ready(situation, name, pods)
        if ready:
            actions += ensure(model, plan, route, situation.services, build, observe)
        else:
            # No request (nor copy) goes to pods that are not ready: the route keeps what
            # it has (the stable everything, at first) until they are.
            actions += ensure_services(model, plan, situation.services)
            if route is None and model.status.stable_release is not None:
                rest = RoutePlan(((model.status.stable_release, 100),))
                actions += ensure(model, rest, route, situation.services, build, observe)
        on_route = live(route, plan, model, reports)
        note = ""
        if not on_route and ready:
            note = waiting(route, model, live(route, plan, model, False))
        elif not ready:
            own = situation.deployments.get(name)
            have = own.ready_replicas if own else 0
            note = f"waiting for {have}/{pods} ready candidate pods before the route changes"
        actions = merge(actions, [])  # the stable's Service may be named twice above
        return Placement(actions, achieved, on_route and ready, note, describe(route, model))

    def place(situation: Situation, model: ModelDeployment, weight: int) -> Placement:
        name = situation.release.metadata.name
        route = situation.route
        achieved = known(route, situation.release.status.weight)
        if route is not None and carries(route):
            achieved = route.share(service_name(model, name))
        plan = plan_for(model, name, weight)
        return placed(situation, model, plan, pods_for(model, weight), achieved)

    def mirror(situation: Situation, model: ModelDeployment, percent: int) -> Placement:
        name = situation.release.metadata.name
        stable = model.status.stable_release or name
        route = situation.route
        achieved = known(route, situation.release.status.mirror_percent)
        if route is not None and carries(route):
            achieved = route.mirrored(service_name(model, name))
        plan = RoutePlan(((stable, 100),), (name, percent))
        return placed(situation, model, plan, pods_for(model, percent), achieved)

    def switch(situation: Situation, model: ModelDeployment, release: str) -> Placement:
        plan = RoutePlan(((release, 100),))
        route = situation.route
        actions = ensure(model, plan, route, situation.services, build, observe)
        reached = not actions and live(route, plan, model, reports)
        note = "" if reached else waiting(route, model, live(route, plan, model, False))
        return Placement(actions, 100 if reached else 0, reached, note, describe(route, model))

    def at_rest(
        model: ModelDeployment, route: LiveRoute | None, services: Mapping[str, str]
    ) -> list[Action]:
        stable = model.status.stable_release
        if stable is None or model.status.active_release is not None:
            return []  # nothing to serve yet, or the release in flight owns the route
        return ensure(model, RoutePlan(((stable, 100),)), route, services, build, observe)

    def describe_live(situation: Situation, model: ModelDeployment) -> str | None:
        return describe(situation.route, model)

    def routed(
        model: ModelDeployment, route: LiveRoute | None, releases: Iterable[str]
    ) -> frozenset[str]:
        if route is None:
            return frozenset()
        if reports and route.accepted is not True:
            # The data plane has not taken this generation yet: the one before, whatever
            # it named, may still be live.
            return frozenset(releases)
        names = {name for name, weight in route.backends if weight > 0}
        names |= {route.mirror[0]} if route.mirror else set()
        return frozenset(r for r in releases if service_name(model, r) in names)

    return RouterOps(
        CAPABILITIES, place, switch, switch, at_rest, describe_live, routed, mirror, kind
    )
