"""The shadow phase every strategy can start with: copies of live requests, answers discarded.

The router mirrors ``mirrorPercent`` of live requests to the candidate while
every user keeps getting the stable's answers. The phase passes once the
mirror is live, ``duration`` has elapsed since, and analysis passes: the
model's SLOs (the candidate's latency and errors on the mirrored requests,
against the stable's) and, with ``minAgreement``, the share of mirrored
requests on which both gave the same prediction (joined per request id). A
failure rolls back like any other: the mirror goes, the candidate drains, and
no user ever saw it. Strategy ``shadow`` ends here with a verdict; a canary or
blue-green goes on to its first live step.
"""

from __future__ import annotations

from slipway.api import conditions as cond
from slipway.api.durations import parse_duration
from slipway.api.models import ModelDeployment, ModelReleaseStatus, ShadowSpec
from slipway.api.phases import InconclusiveAction, Phase
from slipway.rollout.controls import Controls
from slipway.rollout.core import Action, Decision, Situation
from slipway.rollout.gate import (
    analysis_settings,
    evidence_needed,
    step_passed,
)
from slipway.rollout.outcomes import past_deadline, progress, roll_back
from slipway.traffic import ROUTERS


def shadow(
    situation: Situation,
    status: ModelReleaseStatus,
    model: ModelDeployment,
    actions: list[Action],
    spec: ShadowSpec,
    controls: Controls,
    held: bool,
) -> Decision | None:
    """One cycle of the shadow phase; None once it has passed (the caller goes on)."""
    now = situation.now
    name = situation.release.metadata.name
    stable = model.status.stable_release
    mirror = ROUTERS[model.spec.router].mirror
    assert mirror is not None  # refused before the release started (traffic.refusal)
    placement = mirror(situation, model, spec.mirror_percent)
    actions += placement.actions
    status.step_label = "shadow"
    status.weight, status.desired_weight = 0, 0
    status.desired_mirror_percent, status.mirror_percent = spec.mirror_percent, placement.achieved
    status.route = placement.route
    if placement.reached and status.weight_reached_at is None:
        status.weight_reached_at = now
    elif not placement.reached and status.weight_reached_at is not None:
        status.weight_reached_at, status.step_started_at = None, now  # the mirror was lost

    if controls.paused or held:
        if controls.paused:
            status.message = "paused by annotation slipway.dev/paused in the shadow phase"
        reason = cond.PAUSED_MANUALLY if controls.paused else cond.HELD_INCONCLUSIVE
        return progress(situation, status, actions, Phase.PAUSED, reason, controls.problem)

    if not placement.reached:
        if past_deadline(model, status.step_started_at, now):
            return roll_back(
                situation,
                status,
                model,
                actions,
                cond.PROGRESS_DEADLINE_EXCEEDED,
                f"the mirror of {spec.mirror_percent}% to {name!r} was not live within"
                f" progressDeadline {model.spec.progress_deadline}"
                + (f" ({placement.note})" if placement.note else ""),
            )
        note = f": {placement.note}" if placement.note else ""
        status.message = (
            f"shadow: waiting for the mirror of {spec.mirror_percent}% to {name!r}"
            f" (now {placement.achieved}%){note}"
        )
        return progress(
            situation, status, actions, Phase.PROGRESSING, cond.SHADOWING, controls.problem
        )

    since = status.weight_reached_at or now
    duration = parse_duration(spec.duration)
    waited = now - since
    gated = bool(model.spec.slos) or spec.min_agreement is not None
    passed = not gated or step_passed(status, since)
    if waited >= duration and passed:
        status.shadowed_at = now
        status.mirror_percent = status.desired_mirror_percent = None
        return None
    if not passed and waited - duration > parse_duration(model.spec.progress_deadline):
        why = (
            f"shadow: no passing analysis within progressDeadline {model.spec.progress_deadline}"
            f" after {spec.duration} ({evidence_needed(status)})"
        )
        if (
            analysis_settings(model, situation.policy).on_inconclusive
            is InconclusiveAction.ROLLBACK
        ):
            return roll_back(situation, status, model, actions, cond.NOT_ENOUGH_EVIDENCE, why)
        status.message = f"held: {why}; resumes when analysis passes"
        return progress(
            situation, status, actions, Phase.PAUSED, cond.NOT_ENOUGH_EVIDENCE, controls.problem
        )
    head = (
        f"shadow: {placement.achieved}% of live requests copied to {name!r}, answers"
        f" discarded; users see only {stable!r}'s"
    )
    if waited < duration:
        ends = (since + duration).strftime("%H:%M:%SZ")
        verdict = status.verdict.value if status.verdict else "pending"
        tail = f"runs until {ends}, latest analysis {verdict}" if gated else f"runs until {ends}"
    else:
        tail = f"duration done; waiting for evidence: {evidence_needed(status)}"
    status.message = f"{head}; {tail}"
    return progress(situation, status, actions, Phase.PROGRESSING, cond.SHADOWING, controls.problem)
