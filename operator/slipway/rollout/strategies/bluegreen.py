"""The blue-green strategy: a full-size preview, one switch, and a window to switch back.

Step 1, preview: live traffic is pinned to the stable (the model's Service
selects only its pods) and the candidate comes up at full size behind the
``<model>-preview`` Service. Its analysis judges whatever reaches the preview
(a smoke or load test: the ``replicas`` router cannot mirror live traffic).
Once it is available and its analysis passed, it switches by itself
(``autoPromotion``, after ``autoPromotionDelay``) or on ``slipway promote``.

The switch is one change of the Service's selector (or of the route), and it
counts only once the data plane has taken it: the Service read back selects
the candidate, or every parent Gateway accepted the route's new generation.
Until then nothing claims it, and past ``progressDeadline`` every request goes
back to the stable, which never shrank. Step 2, once it is live: the
old stable stays at full size for ``scaleDownDelay`` while analysis goes on;
a failure or an abort inside the window switches back, starting no pod.
When the window ends with analysis passing, the candidate becomes the stable
and the old one goes to zero. An abort before the switch leaves the stable
as it was: the candidate is drained and live traffic never saw it.
"""

from __future__ import annotations

from datetime import datetime

from slipway.api import conditions as cond
from slipway.api.durations import parse_duration
from slipway.api.models import BlueGreenSpec, ModelDeployment, ModelReleaseStatus
from slipway.api.phases import InconclusiveAction, Phase
from slipway.kube.children import build_deployment, build_preview_service
from slipway.kube.fingerprint import service_fingerprint
from slipway.rollout.controls import read_controls
from slipway.rollout.core import (
    Action,
    ApplyObject,
    Decision,
    ScaleDeployment,
    SetActive,
    Situation,
)
from slipway.rollout.gate import (
    SHADOW_STEP,
    analysis_settings,
    evidence_needed,
    record_analysis,
    shadow_for,
    step_passed,
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

PREVIEW, SWITCHED = 1, 2
"""The two steps of a blue-green release."""


def settings_for(model: ModelDeployment) -> BlueGreenSpec:
    return model.spec.blue_green or BlueGreenSpec()


def switch_ends(model: ModelDeployment, status: ModelReleaseStatus) -> datetime | None:
    """When the rollback window after the switch closes (None before the switch)."""
    if status.switched_at is None:
        return None
    return status.switched_at + parse_duration(settings_for(model).scale_down_delay)


def switch_due(model: ModelDeployment, status: ModelReleaseStatus) -> datetime | None:
    """When an automatic switch may happen (None without autoPromotion or a preview)."""
    spec = settings_for(model)
    if not spec.auto_promotion or status.weight_reached_at is None:
        return None
    return status.weight_reached_at + parse_duration(spec.auto_promotion_delay)


def roll_out(situation: Situation, status: ModelReleaseStatus, model: ModelDeployment) -> Decision:
    """One cycle of a blue-green release."""
    release, now = situation.release, situation.now
    name = release.metadata.name
    controls = read_controls(release.metadata.annotations)
    actions: list[Action] = []
    if model.status.active_release != name:
        actions.append(SetActive(name))
    status.started_at = status.started_at or now
    shadowing = shadow_for(situation, model)
    if status.step is None:
        first = SHADOW_STEP if shadowing and status.shadowed_at is None else PREVIEW
        status.step, status.step_started_at, status.weight_reached_at = first, now, None

    if controls.abort:
        return aborted(situation, status, model, actions)
    tick = record_analysis(situation, status, model, analysis_settings(model, situation.policy))
    if tick.rollback is not None:
        return roll_back(situation, status, model, actions, *tick.rollback)
    held = tick.held is not None
    if status.step == SHADOW_STEP and controls.promote:
        # Promoted by hand: the shadow phase is skipped, the preview's clocks start now.
        status.step, status.step_started_at, status.weight_reached_at = PREVIEW, now, None
    if status.step == SHADOW_STEP and shadowing is not None and not controls.promote:
        going = shadow(situation, status, model, actions, shadowing, controls, held)
        if going is not None:
            return going
        # The shadow passed: the preview starts now, in this same cycle.
        status.step, status.step_started_at, status.weight_reached_at = PREVIEW, now, None
        held = False
    if status.step != SWITCHED:
        return _preview(situation, status, model, actions, held=held)
    return _switched(situation, status, model, actions, manual=controls.promote)


def _preview(
    situation: Situation,
    status: ModelReleaseStatus,
    model: ModelDeployment,
    actions: list[Action],
    held: bool,
) -> Decision:
    release, now = situation.release, situation.now
    name, stable = release.metadata.name, model.status.stable_release
    controls = read_controls(release.metadata.annotations)
    total = model.spec.replicas
    own = situation.deployments.get(name)
    router = ROUTERS[model.spec.router]
    mirrored, note = True, ""
    if stable is not None and router.mirror is not None:
        # Every live request stays with the stable, and a copy of each goes to the preview
        # (at full size), so its pre-switch analysis judges live traffic; answers discarded.
        placement = router.mirror(situation, model, 100)
        actions += placement.actions
        status.desired_mirror_percent, status.mirror_percent = 100, placement.achieved
        mirrored, note = placement.reached, placement.note
    elif stable is not None:
        # Live traffic is pinned to the stable before the candidate has any pod (the
        # Service is applied before the Deployment, in this same list).
        actions += router.switch(situation, model, stable).actions
    status.route = router.describe(situation, model)
    if own is None:
        if not any(isinstance(a, ApplyObject) and a.body["kind"] == "Deployment" for a in actions):
            actions.append(ApplyObject(build_deployment(model, release, total)))
    elif own.replicas != total and ScaleDeployment(own.name, total) not in actions:
        actions.append(ScaleDeployment(own.name, total))
    preview = build_preview_service(model, name)
    if situation.services.get(preview["metadata"]["name"]) != service_fingerprint(preview):
        actions.append(ApplyObject(preview))  # also after a shadow, or if deleted by hand
    status.step_label, status.weight, status.desired_weight = "preview", 0, 0

    available = own is not None and own.replicas == total and own.available
    if available and not mirrored:
        # Its analysis counts from when the copies of live requests reach it.
        status.weight_reached_at = None
        if past_deadline(model, status.step_started_at, now):
            return roll_back(
                situation,
                status,
                model,
                actions,
                cond.PROGRESS_DEADLINE_EXCEEDED,
                f"the mirror of live traffic to the preview was not live within"
                f" progressDeadline {model.spec.progress_deadline} ({note})",
            )
        status.message = f"preview available; waiting for the mirror of live traffic: {note}"
        return progress(
            situation, status, actions, Phase.PROGRESSING, cond.STEP_PROGRESSING, controls.problem
        )
    if not available:
        status.weight_reached_at = None
        if past_deadline(model, status.step_started_at, now):
            return roll_back(
                situation,
                status,
                model,
                actions,
                cond.PROGRESS_DEADLINE_EXCEEDED,
                f"the preview did not reach {total} available pods within progressDeadline"
                f" {model.spec.progress_deadline}",
            )
        ready = own.ready_replicas if own else 0
        status.message = (
            f"preview: waiting for {ready}/{total} candidate pods; every live request still"
            f" goes to {stable!r}"
        )
        return progress(
            situation, status, actions, Phase.PROGRESSING, cond.WAITING_FOR_PODS, controls.problem
        )
    status.weight_reached_at = status.weight_reached_at or now
    if controls.paused or held:
        if controls.paused:
            status.message = "paused by annotation slipway.dev/paused before the switch"
        reason = cond.PAUSED_MANUALLY if controls.paused else cond.HELD_INCONCLUSIVE
        return progress(situation, status, actions, Phase.PAUSED, reason, controls.problem)

    passed = not model.spec.slos or step_passed(status, status.weight_reached_at)
    if not passed:
        return _wait_for_evidence(situation, status, model, actions, status.weight_reached_at)
    due = switch_due(model, status)
    if controls.promote or (due is not None and now >= due):
        return _switch(situation, status, model, actions, manual=controls.promote)
    if due is None:
        status.message = (
            "preview available and its analysis passed; waiting for `slipway promote`"
            " (autoPromotion is off)"
        )
    else:
        status.message = (
            f"preview available and its analysis passed; switching at {due.strftime('%H:%M:%SZ')}"
        )
    return progress(
        situation, status, actions, Phase.PROGRESSING, cond.STEP_PROGRESSING, controls.problem
    )


def _switch(
    situation: Situation,
    status: ModelReleaseStatus,
    model: ModelDeployment,
    actions: list[Action],
    manual: bool,
) -> Decision:
    """Every live request to the candidate, in one change of the Service's selector or
    the route; claimed once the data plane has taken it (``_switched``)."""
    now, kind = situation.now, ROUTERS[model.spec.router].route_kind
    # The preview's mirror route of this tick gives way to the switch: one route write.
    actions[:] = [a for a in actions if not (isinstance(a, ApplyObject) and a.body["kind"] == kind)]
    status.step, status.step_started_at, status.weight_reached_at = SWITCHED, now, None
    status.switched_at = None
    status.mirror_percent = status.desired_mirror_percent = None
    return _switched(situation, status, model, actions, manual)


def _switched(
    situation: Situation,
    status: ModelReleaseStatus,
    model: ModelDeployment,
    actions: list[Action],
    manual: bool = False,
) -> Decision:
    name, now = situation.release.metadata.name, situation.now
    own = situation.deployments.get(name)
    if own is not None and own.replicas != model.spec.replicas:
        actions.append(ScaleDeployment(own.name, model.spec.replicas))
    router = ROUTERS[model.spec.router]
    # Written every pass: repairs a route changed by hand.
    switch = router.switch(situation, model, name)
    actions[:] = merge(actions, switch.actions)
    status.route = switch.route or router.describe(situation, model)
    status.step_label, status.desired_weight = "switched", 100
    if not switch.reached:
        return _switching(situation, status, model, actions, switch.note, manual)
    if status.switched_at is None:
        # The data plane took the switch: it is claimed, and the window starts, now.
        status.switched_at = status.weight_reached_at = now
    status.weight = 100
    switched_at, ends = status.switched_at, switch_ends(model, status)
    assert ends is not None
    passed = not model.spec.slos or step_passed(status, switched_at)
    if now >= ends and passed:
        done = mark_succeeded(situation, status, model)
        return Decision(done.status, merge(actions, done.actions))
    if now >= ends:
        return _wait_for_evidence(situation, status, model, actions, ends)
    how = f" ({PROMOTED_BY_HAND})" if manual and switched_at == now else ""
    status.message = (
        f"switched{how}: every request goes to {name!r}; rollback window until"
        f" {ends.strftime('%H:%M:%SZ')} ({model.status.stable_release!r} at full size for an"
        " instant switch back)"
    )
    return progress(situation, status, actions, Phase.PROGRESSING, cond.SWITCHED, None)


def _switching(
    situation: Situation,
    status: ModelReleaseStatus,
    model: ModelDeployment,
    actions: list[Action],
    note: str,
    manual: bool,
) -> Decision:
    """The switch is written but its data plane has not taken it (or no longer has): the
    stable may still get every request, so nothing is claimed, nothing succeeds and the
    stable stays at full size; past progressDeadline every request goes back to it."""
    name, now = situation.release.metadata.name, situation.now
    stable = model.status.stable_release
    if status.switched_at is not None:
        # It was live and is not any more (a route changed by hand, a Gateway that stopped
        # taking it): the window starts over once it is live again.
        status.switched_at, status.step_started_at = None, now
    status.weight_reached_at = None
    status.weight = 0
    if past_deadline(model, status.step_started_at, now):
        return roll_back(
            situation,
            status,
            model,
            actions,
            cond.PROGRESS_DEADLINE_EXCEEDED,
            f"the switch to {name!r} was not taken by its data plane within progressDeadline"
            f" {model.spec.progress_deadline}: {note}",
        )
    how = f" ({PROMOTED_BY_HAND})" if manual else ""
    status.message = (
        f"switching{how}: every request to {name!r} is written but not live yet: {note};"
        f" {stable!r} may still get every request and stays at full size"
    )
    return progress(situation, status, actions, Phase.PROGRESSING, cond.SWITCHING, None)


def _wait_for_evidence(
    situation: Situation,
    status: ModelReleaseStatus,
    model: ModelDeployment,
    actions: list[Action],
    since: datetime,
) -> Decision:
    """No passing analysis yet: wait, up to progressDeadline, then as onInconclusive says."""
    where = "preview" if status.switched_at is None else "post-switch"
    why = f"{where} analysis has not passed: {evidence_needed(status)}"
    if situation.now - since > parse_duration(model.spec.progress_deadline):
        settings = analysis_settings(model, situation.policy)
        deadline = f"{why} within progressDeadline {model.spec.progress_deadline}"
        if settings.on_inconclusive is InconclusiveAction.ROLLBACK:
            return roll_back(situation, status, model, actions, cond.NOT_ENOUGH_EVIDENCE, deadline)
        status.message = f"held: {deadline}; resumes when analysis passes"
        return progress(situation, status, actions, Phase.PAUSED, cond.NOT_ENOUGH_EVIDENCE, None)
    status.message = f"{why}; waiting"
    return progress(situation, status, actions, Phase.PROGRESSING, cond.STEP_PROGRESSING, None)
