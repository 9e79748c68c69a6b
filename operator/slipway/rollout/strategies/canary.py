"""The canary strategy: the candidate's weight walks through steps, gated by analysis.

For a step of weight w the router gives the candidate that share (with the
``replicas`` router: round(N*w/100) of N pods, the stable the rest, at least
one until promotion), and status reports the share actually achieved. A step
advances once its weight is reached, its pause has elapsed, and analysis
passes (the shared gate, ``rollout.gate``); a step without SLOs advances on
its pause alone. Promotion scales the candidate to full size and makes it the
stable without touching its pod template; the old stable waits at zero.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from slipway.api import conditions as cond
from slipway.api.durations import format_duration, parse_duration
from slipway.api.models import (
    CanaryStep,
    ModelDeployment,
    ModelReleaseStatus,
)
from slipway.api.phases import InconclusiveAction, Phase, Verdict
from slipway.rollout.controls import read_controls
from slipway.rollout.core import (
    EPOCH,
    Action,
    Decision,
    SetActive,
    Situation,
)
from slipway.rollout.gate import (
    SHADOW_STEP,
    UndecidedLimits,
    analysis_settings,
    evidence_needed,
    lean_summary,
    leaning,
    record_analysis,
    shadow_for,
    step_passed,
    undecided_limits,
)
from slipway.rollout.outcomes import (
    PROMOTED_BY_HAND,
    aborted,
    mark_succeeded,
    merge,
    past_deadline,
    progress,
    roll_back,
)
from slipway.rollout.shadowing import shadow
from slipway.traffic import ROUTERS

DEFAULT_STEPS = (CanaryStep(weight=25), CanaryStep(weight=50), CanaryStep(weight=75))


def steps_for(situation: Situation, model: ModelDeployment) -> list[CanaryStep]:
    """The steps recorded when the release started; before that, the release's own,
    else the ModelDeployment's, else the tier's, else the defaults. Recording them means
    a later edit of the ModelDeployment or the policy never moves a release in flight."""
    if situation.release.status.steps:
        return list(situation.release.status.steps)
    policy = situation.policy.spec.canary if situation.policy else None
    for canary in (situation.release.spec.canary, model.spec.canary, policy):
        if canary is not None:
            return list(canary.steps)
    return list(DEFAULT_STEPS)


def roll_out(situation: Situation, status: ModelReleaseStatus, model: ModelDeployment) -> Decision:
    """One cycle of a canary."""
    release, now = situation.release, situation.now
    name = release.metadata.name
    steps = steps_for(situation, model)
    settings = analysis_settings(model, situation.policy)
    controls = read_controls(release.metadata.annotations)
    actions: list[Action] = []
    if model.status.active_release != name:
        actions.append(SetActive(name))
    shadowing = shadow_for(situation, model)
    if status.step is None:
        first = SHADOW_STEP if shadowing and status.shadowed_at is None else 1
        status.step, status.step_started_at, status.weight_reached_at = first, now, None
        status.steps = steps
    status.started_at = status.started_at or now

    if controls.abort:
        return aborted(situation, status, model, actions)

    tick = record_analysis(situation, status, model, settings)
    if tick.rollback is not None:
        return roll_back(situation, status, model, actions, *tick.rollback)
    limits = undecided_limits(model, situation.policy)
    too_long = track_undecided(situation, status, model, limits)
    if too_long is not None:
        return roll_back(situation, status, model, actions, cond.UNDECIDED_TOO_LONG, too_long)
    held_inconclusive = tick.held is not None

    promoting = controls.promote or status.step > len(steps)
    if status.step == SHADOW_STEP and shadowing is not None and not promoting:
        going = shadow(situation, status, model, actions, shadowing, controls, held_inconclusive)
        if going is not None:
            return going
        # The shadow passed: step 1 starts now, in this same cycle.
        status.step, status.step_started_at, status.weight_reached_at = 1, now, None
        held_inconclusive = False
    if promoting:
        if status.step <= len(steps):
            status.step, status.step_started_at = len(steps) + 1, now  # promoted by hand
        return promote(situation, status, model, actions, controls.promote)

    step_weight = steps[status.step - 1].weight
    lowered = status.undecided_since is not None and (limits.weight or 100) < step_weight
    desired = min(step_weight, limits.weight or 100) if lowered else step_weight
    placement = ROUTERS[model.spec.router].place(situation, model, desired)
    actions += placement.actions
    status.desired_weight = desired
    status.weight = placement.achieved
    status.route = placement.route
    status.step_label = f"{status.step}/{len(steps)}"
    reached = placement.reached
    if reached and status.weight_reached_at is None:
        status.weight_reached_at = now
    elif not reached and status.weight_reached_at is not None:
        # The weight was lost (a pod restarted): the step starts over, pause and analysis too.
        status.weight_reached_at, status.step_started_at = None, now

    if controls.paused or held_inconclusive:
        reason = cond.PAUSED_MANUALLY if controls.paused else cond.HELD_INCONCLUSIVE
        if controls.paused:
            status.message = (
                f"paused by annotation slipway.dev/paused at step {status.step_label},"
                f" weight {status.weight}%"
            )
        return progress(situation, status, actions, Phase.PAUSED, reason, controls.problem)

    if not reached:
        if past_deadline(model, status.step_started_at, now):
            return roll_back(
                situation,
                status,
                model,
                actions,
                cond.PROGRESS_DEADLINE_EXCEEDED,
                f"step {status.step_label} did not reach weight {desired}% within progressDeadline"
                f" {model.spec.progress_deadline}"
                + (f": {placement.note}" if placement.note else ""),
            )
        status.message = (
            f"step {status.step_label}: waiting for weight {desired}% (now {status.weight}%)"
            + (f": {placement.note}" if placement.note else "")
            + (f"; {_lowered_message(status, step_weight, desired)}" if lowered else "")
        )
        return progress(
            situation, status, actions, Phase.PROGRESSING, cond.STEP_PROGRESSING, controls.problem
        )

    pause = parse_duration(steps[status.step - 1].pause)
    waited = now - (status.weight_reached_at or now)
    gated = bool(model.spec.slos)
    passed = not gated or step_passed(status, status.weight_reached_at or now)
    overdue = waited - pause > parse_duration(model.spec.progress_deadline)
    if overdue and not passed:
        why = (
            f"step {status.step_label}: no passing analysis within progressDeadline"
            f" {model.spec.progress_deadline} after the pause ({evidence_needed(status)})"
        )
        if settings.on_inconclusive is InconclusiveAction.ROLLBACK:
            return roll_back(situation, status, model, actions, cond.NOT_ENOUGH_EVIDENCE, why)
        status.message = f"held: {why}; resumes when analysis passes"
        return progress(
            situation, status, actions, Phase.PAUSED, cond.NOT_ENOUGH_EVIDENCE, controls.problem
        )
    if waited >= pause and passed:
        status.step += 1
        status.step_started_at, status.weight_reached_at = now, None
        # Act on the next step now rather than one tick later.
        follow = roll_out(replace(situation, analysis=None), status, model)
        return Decision(follow.status, merge(actions, follow.actions))

    status.message = _step_message(status, steps, desired, pause, waited >= pause, gated)
    reason = cond.STEP_PROGRESSING
    if lowered:
        reason = cond.LEANING_TO_REGRESSION
        status.message = f"{status.message}; {_lowered_message(status, step_weight, desired)}"
    return progress(situation, status, actions, Phase.PROGRESSING, reason, controls.problem)


def track_undecided(
    situation: Situation,
    status: ModelReleaseStatus,
    model: ModelDeployment,
    limits: UndecidedLimits,
) -> str | None:
    """Keep ``undecidedSince`` for this tick's analysis; why to roll back, if it is time.

    Only with undecidedWeight or maxUndecided set, and only in canary steps (a shadow
    step exposes nobody). A passing analysis clears it; the first analysis that leans
    toward a regression sets it. Past maxUndecided, an analysis that still leans rolls
    the release back; one that no longer leans starts the clock over (the weight returns
    to the step's), so an identical candidate is never rolled back for one noisy stretch.
    """
    results = situation.analysis
    if not limits.tracked or results is None or status.step in (None, SHADOW_STEP):
        return None
    latest = status.analysis[-1] if status.analysis else None
    if latest is not None and latest.verdict is Verdict.PASS:
        status.undecided_since = None
        return None
    leans = leaning(results, model)
    since = status.undecided_since
    if since is None:
        if leans:
            status.undecided_since = situation.now
        return None
    if limits.longest is None or situation.now - since < limits.longest:
        return None
    if not leans:
        status.undecided_since = None  # no longer leaning at the bound: start over
        return None
    return (
        f"the evidence leaned toward a regression for {format_duration(situation.now - since)}"
        f" (maxUndecided {format_duration(limits.longest)}) without an analysis passing:"
        f" {lean_summary(leans)}"
    )


def _lowered_message(status: ModelReleaseStatus, step_weight: int, desired: int) -> str:
    since = status.undecided_since
    when = since.strftime("%H:%M:%SZ") if since else "?"
    achieved = status.weight
    router = f", {achieved}% achieved" if achieved is not None and achieved != desired else ""
    return (
        f"weight lowered to {desired}% from the step's {step_weight}% (undecidedWeight{router}):"
        f" the evidence has leaned toward a regression since {when}; it returns once an"
        " analysis passes"
    )


def _step_message(
    status: ModelReleaseStatus,
    steps: list[CanaryStep],
    desired: int,
    pause: timedelta,
    paused_enough: bool,
    gated: bool,
) -> str:
    """What the step waits for, in words; no countdown (it would be written every tick)."""
    head = f"step {status.step_label}: weight {status.weight}% (want {desired}%)"
    if not paused_enough:
        ends = (status.weight_reached_at or status.step_started_at or EPOCH) + pause
        waits = f"pause {steps[(status.step or 1) - 1].pause} until {ends.strftime('%H:%M:%SZ')}"
        if not gated:
            return f"{head}, {waits}; no SLOs to analyse"
        verdict = status.verdict.value if status.verdict else "pending"
        return f"{head}, {waits}, latest analysis {verdict}"
    in_step = [r for r in status.analysis if r.step == status.step]
    if not in_step or (status.weight_reached_at and in_step[-1].at <= status.weight_reached_at):
        return f"{head}, pause done; waiting for the first analysis at this weight"
    return f"{head}, pause done; waiting for evidence: {evidence_needed(status)}"


def promote(
    situation: Situation,
    status: ModelReleaseStatus,
    model: ModelDeployment,
    actions: list[Action],
    manual: bool,
) -> Decision:
    """Give the candidate everything at full size; once live, it becomes the stable."""
    total = model.spec.replicas
    status.step_label = "promoting"
    status.desired_weight = 100
    placement = ROUTERS[model.spec.router].place(situation, model, 100)
    actions = merge(actions, placement.actions)
    status.weight = placement.achieved
    status.route = placement.route
    own = situation.deployments.get(situation.release.metadata.name)
    if own is not None and own.replicas == total and own.available and placement.reached:
        done = mark_succeeded(situation, status, model)
        if manual:
            done.status.message = f"{done.status.message} ({PROMOTED_BY_HAND})"
        return Decision(done.status, merge(actions, done.actions))
    if past_deadline(model, status.step_started_at, situation.now):
        why = (
            f"the candidate did not reach {total} available pods within progressDeadline"
            f" {model.spec.progress_deadline} while promoting"
        )
        if own is not None and own.replicas == total and own.available:
            why = (
                f"every request to the candidate was not taken by its data plane within"
                f" progressDeadline {model.spec.progress_deadline} while promoting:"
                f" {placement.note or 'not live yet'}"
            )
        return roll_back(situation, status, model, actions, cond.PROGRESS_DEADLINE_EXCEEDED, why)
    ready = own.ready_replicas if own else 0
    how = "promoted by annotation, " if manual else ""
    note = f"; {placement.note}" if placement.note else ""
    status.message = f"promoting: {how}waiting for {ready}/{total} candidate pods{note}"
    return progress(situation, status, actions, Phase.PROGRESSING, cond.PROMOTING, None)
