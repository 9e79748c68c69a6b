"""The direct strategy, and the first release of a model (nothing to protect yet).

The release's Deployment is brought up at full size beside the stable; once
all its pods are available it becomes the stable and only then is the old
stable's Deployment removed. If its pods never become available within the
progress deadline the release fails and the stable is left untouched.
"""

from __future__ import annotations

from slipway.api import conditions as cond
from slipway.api.durations import parse_duration
from slipway.api.models import (
    ModelDeployment,
    ModelReleaseStatus,
)
from slipway.api.phases import Phase
from slipway.kube.children import build_deployment
from slipway.rollout.conditions import set_condition
from slipway.rollout.core import (
    Action,
    ApplyObject,
    Decision,
    SetActive,
    Situation,
)
from slipway.rollout.outcomes import fail, mark_succeeded, merge
from slipway.traffic import ROUTERS
from slipway.traffic.replicas import achieved_weight


def roll_out(situation: Situation, status: ModelReleaseStatus, model: ModelDeployment) -> Decision:
    """One cycle of a direct (or first) rollout."""
    first = model.status.stable_release is None
    release, now = situation.release, situation.now
    name = release.metadata.name
    actions: list[Action] = []
    if model.status.active_release != name:
        actions.append(SetActive(name))
    own = situation.deployments.get(name)
    if own is None or own.replicas != model.spec.replicas:
        actions.append(ApplyObject(build_deployment(model, release, model.spec.replicas)))
    status.started_at = status.started_at or now
    status.step, status.step_label, status.desired_weight = 1, "1/1", 100
    status.weight = achieved_weight(situation.deployments, name)

    note, route_note = "", ""
    if own is not None and own.replicas == model.spec.replicas and own.available:
        router = ROUTERS[model.spec.router]
        if first or router.route_kind is None:
            decision = mark_succeeded(situation, status, model)
            return Decision(decision.status, actions + decision.actions)
        # Behind a route: every request moves to the new release, and only once the data
        # plane has that does the old stable go (else it would drain under live requests).
        placement = router.place(situation, model, 100)
        actions = merge(actions, placement.actions)
        status.weight, status.route = placement.achieved, placement.route
        if placement.reached:
            decision = mark_succeeded(situation, status, model)
            return Decision(decision.status, merge(actions, decision.actions))
        route_note = placement.note or "not live yet"
        note = f"; moving every request to it: {route_note}"

    deadline = parse_duration(model.spec.progress_deadline)
    if now - status.started_at > deadline:
        why = None
        if route_note:  # the pods were available; the data plane never took the route
            why = (
                f"the route sending every request to {name!r} was not taken by its data"
                f" plane within progressDeadline {model.spec.progress_deadline}: {route_note}"
            )
        return fail(situation, status, model, actions, deadline.total_seconds(), own, why)

    ready = f"{own.available_replicas}/{own.replicas}" if own else f"0/{model.spec.replicas}"
    kind = "first release" if first else "direct release"
    status.phase = Phase.PROGRESSING
    status.message = f"{kind}: waiting for pods to become available ({ready}){note}"
    if note:
        status.message = f"{kind}: pods available{note}"
    status.conditions = set_condition(
        status.conditions,
        cond.READY,
        "True",
        cond.WAITING_FOR_PODS,
        status.message,
        now,
        release.metadata.generation,
    )
    status.conditions = set_condition(
        status.conditions,
        cond.AVAILABLE,
        "False",
        cond.WAITING_FOR_PODS,
        f"{ready} pods available",
        now,
        release.metadata.generation,
    )
    return Decision(status, actions)
