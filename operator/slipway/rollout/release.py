"""The entry point of the decision core for one ModelRelease.

It settles what must hold before any strategy runs (the ModelDeployment
exists, no other release is in flight, the strategy is available) and then
hands over to the strategy's own module.
"""

from __future__ import annotations

from dataclasses import replace

from slipway.api import conditions as cond
from slipway.api.phases import Phase, Strategy
from slipway.rollout import outcomes
from slipway.rollout.controls import read_controls
from slipway.rollout.core import Decision, Situation
from slipway.rollout.gate import shadow_for
from slipway.rollout.outcomes import pending, refuse
from slipway.rollout.policy import check_policy
from slipway.rollout.rollback import pending_request, request_accepted
from slipway.rollout.strategies import STRATEGIES
from slipway.rollout.timing import next_look
from slipway.traffic import refusal


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
        done = outcomes.mark_succeeded(situation, status, model)
        if read_controls(release.metadata.annotations).promote:
            done.status.message = f"{done.status.message} ({outcomes.PROMOTED_BY_HAND})"
        return done

    started = status.phase in (Phase.PROGRESSING, Phase.PAUSED)
    if started and read_controls(release.metadata.annotations).abort:
        return outcomes.aborted(situation, status, model, [])
    request = pending_request(model)
    if request is not None and request_accepted(model, request):
        if started:
            return outcomes.roll_back(
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
        return STRATEGIES[Strategy.DIRECT](situation, status, model)
    if status.started_at is None:
        # Refused at once: waiting could never help (the spec is immutable, and a router
        # change on the ModelDeployment applies to the next release).
        keeps = f"; the stable {model.status.stable_release!r} keeps serving"
        if strategy not in STRATEGIES:
            available = ", ".join(s.value for s in STRATEGIES)
            return refuse(
                situation,
                status,
                cond.STRATEGY_NOT_SUPPORTED,
                f"strategy {strategy.value!r} is not available in this version of Slipway"
                f" (available: {available}){keeps}",
            )
        shadowing = strategy is not Strategy.DIRECT and shadow_for(situation, model) is not None
        why = refusal(strategy, model.spec.router, shadowing)
        if why is not None:
            return refuse(situation, status, cond.ROUTER_NOT_SUPPORTED, f"{why}{keeps}")
    status.strategy = strategy
    return STRATEGIES[strategy](situation, status, model)


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
