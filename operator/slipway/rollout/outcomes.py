"""The outcomes every strategy shares: hold, progress, promote, roll back, fail.

A strategy decides *which* outcome a tick has; the outcome decides what it
means for status (phase, message, Ready condition) and for the cluster (the
actions), the same way for every strategy. Nothing here picks a strategy,
and no strategy module imports another.
"""

from __future__ import annotations

from datetime import datetime

from slipway.api import conditions as cond
from slipway.api.durations import parse_duration
from slipway.api.models import (
    ModelDeployment,
    ModelReleaseStatus,
    ReleaseRecord,
)
from slipway.api.phases import Phase, Strategy
from slipway.kube.children import deployment_name
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
    SetServing,
    Situation,
    merge,
    stable_deployment,
)
from slipway.traffic import ROUTERS

__all__ = ["merge"]  # shared by the strategies with the outcomes

PROMOTED_BY_HAND = "promoted by annotation slipway.dev/action"


def mark_succeeded(
    situation: Situation, status: ModelReleaseStatus, model: ModelDeployment
) -> Decision:
    """Make the release the stable: record it, then retire the previous stable.

    Idempotent: a pass cut short after any of its writes (the record, the release's
    status, the route, the scale-down) is finished by the next one, which finds the
    record already there and redoes whatever else is missing."""
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
    elif model.status.active_release == name:
        actions.append(SetActive(None))
    # Live traffic moves to the new stable (a pinned Service, a route) before the
    # old one shrinks, and it shrinks only once the data plane has taken that: until
    # then the route it replaces may still send it requests (the model pass scales it
    # down once the live route no longer names it).
    restored = ROUTERS[model.spec.router].restore(situation, model, name)
    actions += restored.actions
    previous = replaced_stable(situation, model)
    if previous is not None and previous.replicas != 0 and restored.reached:
        # Kept at zero (not deleted) so a rollback to it is a scale-up.
        actions.append(ScaleDeployment(previous.name, 0))
    own = situation.deployments.get(name)
    status.phase = Phase.SUCCEEDED
    status.step_label = "complete"
    status.route = None  # at rest the route is the model's, with this release at 100 %
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


def replaced_stable(situation: Situation, model: ModelDeployment) -> DeploymentState | None:
    """The Deployment of the stable this release replaces: the recorded stable before the
    release's record is written, the one below it in the history after (a restart
    between the record and the rest of the promotion)."""
    name = situation.release.metadata.name
    if model.status.stable_release != name:
        return stable_deployment(situation, model)
    history = model.status.history
    if len(history) < 2 or history[0].release != name or history[1].release == name:
        return None
    return situation.deployments.get(history[1].release)


def fail(
    situation: Situation,
    status: ModelReleaseStatus,
    model: ModelDeployment,
    actions: list[Action],
    deadline_seconds: float,
    own: DeploymentState | None,
    why: str | None = None,
) -> Decision:
    """Give up on a release whose pods never became available (or, ``why``, whose route
    the data plane never took); the stable is untouched."""
    release, now = situation.release, situation.now
    ready = f"{own.available_replicas}/{own.replicas}" if own else "0"
    stable = model.status.stable_release
    router = ROUTERS[model.spec.router]
    restored = router.restore(situation, model, stable) if stable is not None else None
    keeps = f"; stable {stable!r} keeps serving" if stable else ""
    if restored is not None and not restored.reached and restored.actions and _served(situation):
        keeps = f"; every request goes back to stable {stable!r} once its data plane takes it"
    status.phase = Phase.FAILED
    status.weight, status.desired_weight = 0, 0
    status.completed_at = now
    status.message = (
        f"pods not available within progressDeadline {model.spec.progress_deadline}"
        f" ({ready} available after {int(deadline_seconds)}s){keeps}"
    )
    if why is not None:
        status.message = f"{why}{keeps}"
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
    if restored is not None:  # every request back to the stable (a route may have moved)
        kept += restored.actions
    # Behind a route the candidate keeps its pods until the live route no longer names it
    # (the model's pass prunes it then), as after a rollback.
    if own is not None and router.route_kind is None:
        kept.append(DeleteDeployment(own.name, "progress deadline exceeded"))
    if model.status.active_release in (None, release.metadata.name):
        kept.append(SetActive(None))
    return Decision(status, kept)


def roll_back(
    situation: Situation,
    status: ModelReleaseStatus,
    model: ModelDeployment,
    actions: list[Action],
    reason: str,
    why: str,
) -> Decision:
    """Send the candidate's share to zero at once and give the stable its full size back."""
    name = situation.release.metadata.name
    own = situation.deployments.get(name)
    stable = stable_deployment(situation, model)
    kept: list[Action] = [
        a
        for a in actions
        if not isinstance(a, (ApplyObject, ScaleDeployment, SetActive, SetServing))
    ]
    # Every request back to the stable first (one selector or route change to pods that
    # never stopped; no mirror), then drain the candidate.
    restored = None
    if model.status.stable_release is not None:
        restored = ROUTERS[model.spec.router].restore(situation, model, model.status.stable_release)
        kept += restored.actions
    # Behind a route the candidate keeps its pods until the data plane has the route
    # without it (the model's pass prunes it then); drained now, requests Envoy still
    # sends it in the meantime would fail.
    behind_route = ROUTERS[model.spec.router].route_kind is not None
    if own is not None and own.replicas != 0 and not behind_route:
        kept.append(ScaleDeployment(own.name, 0))
    if stable is not None and stable.replicas != model.spec.replicas:
        kept.append(ScaleDeployment(stable.name, model.spec.replicas))
    if model.status.active_release in (None, name):
        kept.append(SetActive(None))
    status.phase = Phase.ROLLED_BACK
    status.weight, status.desired_weight = 0, 0
    status.route = None  # no longer this release's: the stable has everything
    status.mirror_percent = status.desired_mirror_percent = None
    status.completed_at = situation.now
    keeps = (
        f"; stable {model.status.stable_release!r} keeps serving"
        if model.status.stable_release
        else ""
    )
    if restored is not None and not restored.reached and restored.actions and _served(situation):
        # Not claimed before the data plane has taken it.
        keeps = (
            f"; every request goes back to stable {model.status.stable_release!r}, at full"
            " size, once its data plane takes the change"
        )
    status.message = f"rolled back: {why}{keeps}"
    status.conditions = set_condition(
        status.conditions,
        cond.READY,
        "False",
        reason,
        status.message,
        situation.now,
        situation.release.metadata.generation,
    )
    return Decision(status, kept)


def _served(situation: Situation) -> bool:
    """The live route (or the Service pinned to it) may send the release live requests,
    not only copies: its share moves back only once the data plane takes the change."""
    model, name = situation.model, situation.release.metadata.name
    if model is None:
        return False
    route = situation.route
    own = deployment_name(model.metadata.name, name)
    return model.status.serving == name or (route is not None and route.share(own) > 0)


def aborted(
    situation: Situation, status: ModelReleaseStatus, model: ModelDeployment, actions: list[Action]
) -> Decision:
    """Roll back because a person asked (slipway abort / the annotation)."""
    why = "aborted by annotation slipway.dev/action"
    return roll_back(situation, status, model, actions, cond.ABORTED, why)


def progress(
    situation: Situation,
    status: ModelReleaseStatus,
    actions: list[Action],
    phase: Phase,
    reason: str,
    problem: str | None,
) -> Decision:
    status.phase = phase
    if problem:
        status.message = f"{status.message} ({problem})"
    status.conditions = set_condition(
        status.conditions,
        cond.READY,
        "True",
        reason,
        status.message or "",
        situation.now,
        situation.release.metadata.generation,
    )
    return Decision(status, actions)


def past_deadline(model: ModelDeployment, since: datetime | None, now: datetime) -> bool:
    """Whether more than progressDeadline has passed since ``since`` (None: not started)."""
    return since is not None and now - since > parse_duration(model.spec.progress_deadline)


def pending(
    situation: Situation, status: ModelReleaseStatus, reason: str, message: str
) -> Decision:
    """Hold the release in Pending with a reason that says what it waits for."""
    return settle(situation, status, Phase.PENDING, reason, message)


def refuse(situation: Situation, status: ModelReleaseStatus, reason: str, message: str) -> Decision:
    """Fail a release that can never start as it is (its spec is immutable); nothing changed."""
    status.completed_at = situation.now
    return settle(situation, status, Phase.FAILED, reason, message)


def settle(
    situation: Situation, status: ModelReleaseStatus, phase: Phase, reason: str, message: str
) -> Decision:
    """A release that does not roll out this tick: its phase, and why, in the Ready condition."""
    status.phase = phase
    status.message = message
    status.conditions = set_condition(
        status.conditions,
        cond.READY,
        "False",
        reason,
        message,
        situation.now,
        situation.release.metadata.generation,
    )
    return Decision(status)


def child_refused(situation: Situation, message: str) -> Decision:
    """Fail a release whose Deployment the API server refuses (it can never be created as
    it is); the candidate goes to zero and the stable gets its full size back."""
    release, model = situation.release, situation.model
    status = release.status.model_copy(deep=True)
    status.observed_generation = release.metadata.generation
    if model is None:
        return refuse(situation, status, cond.CHILD_REFUSED, message)
    keeps = (
        f"; stable {model.status.stable_release!r} keeps serving"
        if model.status.stable_release
        else ""
    )
    decision = roll_back(situation, status, model, [], cond.CHILD_REFUSED, message)
    decision.status.phase = Phase.FAILED
    decision.status.message = f"failed: {message}{keeps}"
    decision.status.conditions = set_condition(
        decision.status.conditions,
        cond.READY,
        "False",
        cond.CHILD_REFUSED,
        decision.status.message,
        situation.now,
        release.metadata.generation,
    )
    return decision


def evaluated(
    situation: Situation, status: ModelReleaseStatus, model: ModelDeployment, actions: list[Action]
) -> Decision:
    """A shadow-only release passed: the mirror goes and the candidate drains, exactly as
    a rollback does, but the verdict is a pass and nothing was ever served from it."""
    name = situation.release.metadata.name
    decision = roll_back(situation, status, model, actions, cond.SHADOW_PASSED, "")
    decision.status.phase = Phase.EVALUATED
    decision.status.mirror_percent = None
    decision.status.message = (
        f"shadow passed: {name!r} answered copies of live requests within its SLOs and no"
        f" user saw its answers; not promoted (strategy shadow): ship it as a canary or"
        f" blue-green release"
    )
    decision.status.conditions = set_condition(
        decision.status.conditions,
        cond.READY,
        "False",
        cond.SHADOW_PASSED,
        decision.status.message,
        situation.now,
        situation.release.metadata.generation,
    )
    return decision
