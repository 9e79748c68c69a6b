"""The ``replicas`` router: no mesh, traffic follows the ready pods behind one Service.

The ModelDeployment's Service selects every serving pod of the model, so a
candidate's share is its share of the ready pods: for weight w of N replicas
it gets round(N*w/100) and the stable the rest (at least one until
promotion, so a rollback never starts the stable cold). It works on any
cluster; it cannot mirror requests. Blue-green pins the same Service to one
release (``status.serving``): the switch is one change of its selector. The
Service is the data plane's word here: a switch is claimed once the Service
as read back selects the release (the endpoint controller follows it), and
the actions apply it before any scale-down in the same list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from slipway.api.models import ModelDeployment
from slipway.kube.children import build_deployment, build_service
from slipway.kube.fingerprint import service_fingerprint
from slipway.kube.observe import DeploymentState, LiveRoute
from slipway.rollout.core import (
    Action,
    ApplyObject,
    ScaleDeployment,
    SetServing,
    Situation,
    stable_deployment,
)
from slipway.traffic.base import Capability, Placement, RouterOps

NAME: Final = "replicas"
CAPABILITIES: Final = frozenset({Capability.WEIGHTS, Capability.SWITCH})


def place(situation: Situation, model: ModelDeployment, weight: int) -> Placement:
    """Give the candidate ``weight`` percent as its share of the model's ready pods."""
    name = situation.release.metadata.name
    own = situation.deployments.get(name)
    stable = stable_deployment(situation, model)
    candidate_pods, stable_pods = split_replicas(model.spec.replicas, weight)
    if weight >= 100 and stable is not None:
        stable_pods = stable.replicas  # promoting: the stable goes once the candidate is it
    actions: list[Action] = []
    if model.status.serving is not None:
        # A Service still pinned to one release would send the candidate nothing.
        actions += [SetServing(None), ApplyObject(build_service(model, None))]
    if own is None:
        actions.append(ApplyObject(build_deployment(model, situation.release, candidate_pods)))
    elif own.replicas != candidate_pods:
        actions.append(ScaleDeployment(own.name, candidate_pods))
    if stable is not None and stable.replicas != stable_pods:
        actions.append(ScaleDeployment(stable.name, stable_pods))
    # Pods of any other release (a previous stable left up by a crash) share the Service:
    # the split is not what was asked for until they are gone (the model pass scales them
    # to zero).
    others = [
        d
        for r, d in situation.deployments.items()
        if r not in (name, model.status.stable_release) and (d.replicas or d.ready_replicas)
    ]
    reached = (
        model.status.serving is None
        and own is not None
        and own.replicas == candidate_pods
        and own.ready_replicas >= candidate_pods
        and (stable is None or stable.replicas == stable_pods)
        and not others
    )
    achieved = achieved_weight(situation.deployments, name) if model.status.serving is None else 0
    note = ""
    if others:
        listed = ", ".join(f"{d.name} ({d.ready_replicas} ready)" for d in others)
        note = f"pods of other releases still behind the Service: {listed}"
    return Placement(actions, achieved, reached, note)


def split_replicas(total: int, weight: int) -> tuple[int, int]:
    """(candidate, stable) pod counts that come closest to ``weight`` percent.

    The stable keeps at least one pod in every step, so a rollback never starts it cold.
    """
    candidate = min(total, max(1, round(total * weight / 100)))
    return candidate, max(total - candidate, 1)


def achieved_weight(deployments: Mapping[str, DeploymentState], release: str) -> int:
    """``release``'s share of the ready pods behind the model's (unpinned) Service, in
    percent: against every ready pod of the model's Deployments, not only the stable's,
    so a pod left on an earlier release counts as the share it takes."""
    own = deployments.get(release)
    mine = own.ready_replicas if own else 0
    total = sum(d.ready_replicas for d in deployments.values())
    return round(100 * mine / total) if total else 0


def switch(situation: Situation, model: ModelDeployment, release: str) -> Placement:
    """Pin the model's Service to ``release``: one change of its selector, live once the
    Service read back selects only ``release``'s pods."""
    actions: list[Action] = []
    if model.status.serving != release:
        actions = [SetServing(release), ApplyObject(build_service(model, release))]
    return _served(situation, model, actions, (release,), release)


def restore(situation: Situation, model: ModelDeployment, release: str) -> Placement:
    """A Service pinned to another release moves to ``release``; an unpinned one already
    reaches it (the model pass unpins it once nothing else has pods)."""
    serving = model.status.serving
    if serving is None or serving == release:
        return _served(situation, model, [], (None, release), release)
    actions: list[Action] = [SetServing(release), ApplyObject(build_service(model, release))]
    return _served(situation, model, actions, (release,), release)


def _served(
    situation: Situation,
    model: ModelDeployment,
    actions: list[Action],
    pins: tuple[str | None, ...],
    release: str,
) -> Placement:
    """The Service as read back selects ``release`` (pinned to one of ``pins``; None: every
    pod of the model), and nothing is left to write: only then is the change live."""
    name = model.metadata.name
    have = situation.services.get(name)
    reached = not actions and any(
        have == service_fingerprint(build_service(model, pin)) for pin in pins
    )
    note = "" if reached else f"Service {name!r} does not select {release!r}'s pods yet"
    return Placement(actions, 100 if reached else 0, reached, note)


def at_rest(
    model: ModelDeployment, route: LiveRoute | None, services: Mapping[str, str]
) -> list[Action]:
    """Nothing beyond the model's Service, which the model pass keeps."""
    return []


def describe(situation: Situation, model: ModelDeployment) -> str | None:
    """No route object: the split is the ready pods behind the Service."""
    return None


def routed(
    model: ModelDeployment, route: LiveRoute | None, releases: Iterable[str]
) -> frozenset[str]:
    """No route: a release's share is its ready pods, which go as it drains."""
    return frozenset()


OPS: Final = RouterOps(CAPABILITIES, place, switch, restore, at_rest, describe, routed)
