"""The shadow strategy: evaluate a candidate on copies of live requests, then stop.

The shared shadow phase (``rollout.shadowing``) runs alone: the candidate
answers a mirrored share of live requests, users only ever get the stable's
answers, and the release ends with a verdict and no promotion: ``Evaluated``
when analysis passed, ``RolledBack`` when it failed. It needs a router that
can mirror (gatewayAPI, istio); ``replicas`` is refused at once.
"""

from __future__ import annotations

from slipway.api.models import ModelDeployment, ModelReleaseStatus, ShadowSpec
from slipway.rollout.controls import read_controls
from slipway.rollout.core import Action, Decision, SetActive, Situation
from slipway.rollout.gate import SHADOW_STEP, analysis_settings, record_analysis, shadow_for
from slipway.rollout.outcomes import aborted, evaluated, roll_back
from slipway.rollout.shadowing import shadow


def roll_out(situation: Situation, status: ModelReleaseStatus, model: ModelDeployment) -> Decision:
    """One cycle of a shadow-only release."""
    release, now = situation.release, situation.now
    name = release.metadata.name
    controls = read_controls(release.metadata.annotations)
    actions: list[Action] = []
    if model.status.active_release != name:
        actions.append(SetActive(name))
    status.started_at = status.started_at or now
    if status.step is None:
        status.step, status.step_started_at, status.weight_reached_at = SHADOW_STEP, now, None
    if controls.abort:
        return aborted(situation, status, model, actions)
    tick = record_analysis(situation, status, model, analysis_settings(model, situation.policy))
    if tick.rollback is not None:
        return roll_back(situation, status, model, actions, *tick.rollback)
    spec = shadow_for(situation, model) or ShadowSpec()
    going = shadow(situation, status, model, actions, spec, controls, tick.held is not None)
    if going is not None:
        if controls.promote:
            going.status.message = (
                f"{going.status.message} (a shadow release is never promoted; the promote"
                " annotation is ignored)"
            )
        return going
    return evaluated(situation, status, model, actions)
