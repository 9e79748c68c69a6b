"""The direct strategy, and the first release of a model (nothing to protect yet).

The release's Deployment is brought up at full size beside the stable; once
all its pods are available it becomes the stable and only then is the old
stable's Deployment removed. If its pods never become available within the
progress deadline the release fails and the stable is left untouched.
"""

from __future__ import annotations

from slipway.api import conditions as cond
from slipway.api.durations import parse_duration
from slipway.api.models import ModelDeployment, ModelReleaseStatus, ReleaseRecord
from slipway.api.phases import Phase, Strategy
from slipway.kube.children import build_deployment
from slipway.kube.observe import DeploymentState
from slipway.rollout.conditions import set_condition
from slipway.rollout.core import (
    Action,
    ApplyObject,
    Decision,
    DeleteDeployment,
    RecordStable,
    ScaleDeployment,
    SetActive,
    Situation,
)


def roll_out(
    situation: Situation, status: ModelReleaseStatus, model: ModelDeployment, first: bool
) -> Decision:
    """One cycle of a direct (or first) rollout."""
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
    status.weight = achieved_weight(own, stable_deployment(situation, model))

    if own is not None and own.replicas == model.spec.replicas and own.available:
        decision = mark_succeeded(situation, status, model)
        return Decision(decision.status, actions + decision.actions)

    deadline = parse_duration(model.spec.progress_deadline)
    if now - status.started_at > deadline:
        return fail(situation, status, model, actions, deadline.total_seconds(), own)

    ready = f"{own.available_replicas}/{own.replicas}" if own else f"0/{model.spec.replicas}"
    kind = "first release" if first else "direct release"
    status.phase = Phase.PROGRESSING
    status.message = f"{kind}: waiting for pods to become available ({ready})"
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


def mark_succeeded(
    situation: Situation, status: ModelReleaseStatus, model: ModelDeployment
) -> Decision:
    """Make the release the stable: record it, then retire the previous stable."""
    release, now = situation.release, situation.now
    name = release.metadata.name
    actions: list[Action] = []
    if model.status.stable_release != name:
        actions.append(
            RecordStable(
                ReleaseRecord(
                    release=name,
                    version=release.spec.model.version,
                    uri=release.spec.model.uri,
                    digest=release.spec.model.digest,
                    provenance=release.spec.provenance,
                    strategy=status.strategy or Strategy.DIRECT,
                    image=release.spec.image,
                    promoted_at=now,
                ),
                model.spec.history_limit,
            )
        )
        previous = stable_deployment(situation, model)
        if previous is not None and previous.replicas != 0:
            # Kept at zero (not deleted) so a rollback to it is a scale-up.
            actions.append(ScaleDeployment(previous.name, 0))
    elif model.status.active_release == name:
        actions.append(SetActive(None))
    own = situation.deployments.get(name)
    status.phase = Phase.SUCCEEDED
    status.step_label = "complete"
    status.weight, status.desired_weight = 100, 100
    status.completed_at = status.completed_at or now
    status.message = f"promoted: {name!r} is the stable release of {model.metadata.name!r}"
    ready = f"{own.available_replicas}/{own.replicas}" if own else "all"
    for type_, message in (
        (cond.READY, status.message),
        (cond.AVAILABLE, f"{ready} pods available"),
    ):
        status.conditions = set_condition(
            status.conditions,
            type_,
            "True",
            cond.PROMOTED,
            message,
            now,
            release.metadata.generation,
        )
    return Decision(status, actions)


def fail(
    situation: Situation,
    status: ModelReleaseStatus,
    model: ModelDeployment,
    actions: list[Action],
    deadline_seconds: float,
    own: DeploymentState | None,
) -> Decision:
    """Give up on a release whose pods never became available; the stable is untouched."""
    release, now = situation.release, situation.now
    ready = f"{own.available_replicas}/{own.replicas}" if own else "0"
    stable = model.status.stable_release
    keeps = f"; stable {stable!r} keeps serving" if stable else ""
    status.phase = Phase.FAILED
    status.weight, status.desired_weight = 0, 0
    status.completed_at = now
    status.message = (
        f"pods not available within progressDeadline {model.spec.progress_deadline}"
        f" ({ready} available after {int(deadline_seconds)}s){keeps}"
    )
    status.conditions = set_condition(
        status.conditions,
        cond.READY,
        "False",
        cond.PROGRESS_DEADLINE_EXCEEDED,
        status.message,
        now,
        release.metadata.generation,
    )
    kept: list[Action] = [a for a in actions if not isinstance(a, (ApplyObject, SetActive))]
    if own is not None:
        kept.append(DeleteDeployment(own.name, "progress deadline exceeded"))
    if model.status.active_release in (None, release.metadata.name):
        kept.append(SetActive(None))
    return Decision(status, kept)


def stable_deployment(situation: Situation, model: ModelDeployment) -> DeploymentState | None:
    """The stable release's Deployment, if it exists."""
    stable = model.status.stable_release
    return situation.deployments.get(stable) if stable else None


def achieved_weight(own: DeploymentState | None, stable: DeploymentState | None) -> int:
    """The candidate's share of ready pods behind the shared Service, in percent."""
    mine = own.ready_replicas if own else 0
    theirs = stable.ready_replicas if stable else 0
    total = mine + theirs
    return round(100 * mine / total) if total else 0
