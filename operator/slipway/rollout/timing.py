"""When a release must be looked at again if nothing in the cluster changes.

Reconciles are triggered by watch events (a pod became ready, an annotation
was set); what no event announces is time passing: a pause ending, an
analysis falling due, a progress deadline. This module turns the status the
core just decided into the earliest such moment, so the operator sleeps
exactly until then instead of ticking every object every second.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from slipway.api.durations import parse_duration
from slipway.api.models import ModelDeployment, ModelReleaseStatus
from slipway.api.phases import Phase
from slipway.rollout.core import Situation
from slipway.rollout.gate import SHADOW_STEP, analysis_applies, analysis_settings, shadow_for
from slipway.rollout.strategies import bluegreen

SAFETY_NET = timedelta(seconds=10)
"""A release in flight is looked at at least this often, whatever the events say."""
SLACK = timedelta(milliseconds=50)
"""Deadlines compare with '>': look just after them, not exactly at them."""


def next_look(
    situation: Situation, model: ModelDeployment | None, status: ModelReleaseStatus
) -> datetime | None:
    """The earliest moment the decision for this release may change by time alone."""
    if status.phase.is_terminal or model is None:
        return None
    now = situation.now
    if status.phase is Phase.PENDING:
        return None  # waits for an event: another release ends, the model appears
    moments = [now + SAFETY_NET]
    deadline = parse_duration(model.spec.progress_deadline)
    started = status.step_started_at or status.started_at
    if started is not None and status.weight_reached_at is None:
        moments.append(started + deadline + SLACK)
    steps = status.steps or []
    if status.weight_reached_at is not None and status.step and status.step <= len(steps):
        moments.append(status.weight_reached_at + parse_duration(steps[status.step - 1].pause))
    shadow = shadow_for(situation, model)
    if status.step == SHADOW_STEP and shadow is not None and status.weight_reached_at is not None:
        ends = status.weight_reached_at + parse_duration(shadow.duration)
        moments += [ends, ends + deadline + SLACK]  # the verdict; past it, onInconclusive
    for moment in (bluegreen.switch_due(model, status), bluegreen.switch_ends(model, status)):
        if moment is not None:
            moments.append(moment)
    if analysis_applies(situation, model):
        interval = parse_duration(analysis_settings(model, situation.policy).interval)
        last = status.analysis[-1].at if status.analysis else now
        moments.append(last + interval)
    upcoming = [moment for moment in moments if moment > now]
    return min(upcoming) if upcoming else now + SLACK
