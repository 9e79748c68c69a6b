"""The entry point of the decision core for one ModelRelease.

It settles what must hold before any strategy runs (the ModelDeployment
exists, no other release is in flight, the strategy is available) and then
hands over to the strategy's own module.
"""

from __future__ import annotations

from dataclasses import replace

from slipway.api import conditions as cond
from slipway.api.models import ModelReleaseStatus
from slipway.api.phases import Phase, Router, Strategy
from slipway.rollout import canary, direct
from slipway.rollout.conditions import set_condition
from slipway.rollout.controls import read_controls
from slipway.rollout.core import Decision, Situation
from slipway.rollout.policy import check_policy
from slipway.rollout.rollback import pending_request, request_accepted
from slipway.rollout.timing import next_look

IMPLEMENTED = frozenset({Strategy.DIRECT, Strategy.CANARY})


def decide(situation: Situation) -> Decision:
    """The next status and actions for one release, and when to look at it again."""
    decision = _decide(situation)
    if decision.look_again_at is None:
        look = next_look(situation, situation.model, decision.status)
        decision = replace(decision, look_again_at=look)
    return decision


def _decide(situation: Situation) -> Decision:
    release = situation.release
    status = release.status.model_copy(deep=True)
    status.observed_generation = release.metadata.generation
    if status.phase.is_terminal:
        return Decision(status)

    model = situation.model
    if model is None and situation.model_error:
        return pending(
            situation,
            status,
            cond.INVALID_SPEC,
            f"ModelDeployment {release.spec.deployment!r} is invalid ({situation.model_error});"
            " the release waits until it is fixed",
        )
    if model is None:
        return pending(
            situation,
            status,
            cond.DEPLOYMENT_NOT_FOUND,
            f"ModelDeployment {release.spec.deployment!r} does not exist in namespace"
            f" {release.metadata.namespace!r}; the release waits for it",
        )
    if model.status.stable_release == release.metadata.name:
        # Promoted before a restart cut the cycle short: finish the bookkeeping.
        done = direct.mark_succeeded(situation, status, model)
        if read_controls(release.metadata.annotations).promote:
            done.status.message = f"{done.status.message} ({canary.PROMOTED_BY_HAND})"
        return done

    started = status.phase in (Phase.PROGRESSING, Phase.PAUSED)
    if started and read_controls(release.metadata.annotations).abort:
        return canary.roll_back(
            situation, status, model, [], cond.ABORTED, "aborted by annotation slipway.dev/action"
        )
    request = pending_request(model)
    if request is not None and request_accepted(model, request):
        if started:
            return canary.roll_back(
                situation,
                status,
                model,
                [],
                cond.SUPERSEDED_BY_ROLLBACK,
                f"ModelDeployment {model.metadata.name!r} is being rolled back"
                " (annotation slipway.dev/rollback-to)",
            )
        return pending(
            situation,
            status,
            cond.WAITING_FOR_RELEASE,
            f"a rollback of {model.metadata.name!r} is in progress; this release starts after it",
        )

    blocker = in_flight_blocker(situation)
    if blocker is not None:
        return pending(
            situation,
            status,
            cond.WAITING_FOR_RELEASE,
            f"release {blocker!r} of {model.metadata.name!r} is in flight; this release"
            " starts when it finishes (one candidate at a time)",
        )

    strategy = release.spec.strategy or model.spec.default_strategy
    first = model.status.stable_release is None
    if status.started_at is None:
        objection = check_policy(situation.policy, model, release, strategy, first, situation.now)
        if objection is not None and objection.phase is Phase.FAILED:
            return refuse(situation, status, objection.reason, objection.message)
        if objection is not None:
            waiting = pending(situation, status, objection.reason, objection.message)
            return replace(waiting, look_again_at=objection.until)
    if first:
        status.strategy = strategy
        return direct.roll_out(situation, status, model, first=True)
    if model.spec.router is not Router.REPLICAS:
        return pending(
            situation,
            status,
            cond.ROUTER_NOT_SUPPORTED,
            f"router {model.spec.router.value!r} is not available in this version of Slipway;"
            f" use 'replicas' (the stable {model.status.stable_release!r} keeps serving)",
        )
    if strategy not in IMPLEMENTED:
        return pending(
            situation,
            status,
            cond.STRATEGY_NOT_SUPPORTED,
            f"strategy {strategy.value!r} is not available in this version of Slipway;"
            f" use 'canary' or 'direct' (the stable {model.status.stable_release!r} keeps serving)",
        )
    status.strategy = strategy
    if strategy is Strategy.CANARY:
        return canary.roll_out(situation, status, model)
    return direct.roll_out(situation, status, model, first=False)


def in_flight_blocker(situation: Situation) -> str | None:
    """The release that holds the model's rollout slot, if not this one.

    The slot goes to the release named in the ModelDeployment's status, else
    to the oldest release still in flight (name breaks ties), so two releases
    never become candidates at once.
    """
    me = situation.release.metadata.name
    live = [
        s
        for s in situation.siblings
        if not Phase(s.phase).is_terminal and not s.deleting and s.reason not in cond.NEVER_STARTS
    ]
    model = situation.model
    active = model.status.active_release if model else None
    if active and active != me and any(s.name == active for s in live):
        return active
    if active == me:
        return None
    created = situation.release_created
    older = [s for s in live if (s.created, s.name) < (created, me)]
    return min(older, key=lambda s: (s.created, s.name)).name if older else None


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
    decision = canary.roll_back(situation, status, model, [], cond.CHILD_REFUSED, message)
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
