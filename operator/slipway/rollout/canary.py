"""The canary strategy with the ``replicas`` router, gated by SLO analysis.

The candidate's share of traffic is its share of the model's ready pods
behind the shared Service: for a step of weight w out of N replicas the
candidate gets round(N*w/100) pods and the stable the rest (at least one
until promotion), and status reports the share actually achieved. A step
advances once its weight is reached, its pause has elapsed, and the latest
analysis in that step passed. Failures past ``failureLimit`` roll back at
once (candidate to zero, stable restored to full size; its pods are never
restarted); inconclusive ticks past ``inconclusiveLimit`` hold or roll back
as configured, and inconclusive is never a pass. Promotion scales the
candidate to full size and makes it the stable without touching its pod
template, then scales the old stable to zero.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from slipway.analysis.judges import ErrorBudget
from slipway.analysis.judges.sequential import NAME as SEQUENTIAL
from slipway.analysis.verdicts import combine, explain
from slipway.api import conditions as cond
from slipway.api.durations import format_duration, parse_duration
from slipway.api.models import (
    AnalysisRecord,
    AnalysisSettings,
    CanaryStep,
    ModelDeployment,
    ModelReleaseStatus,
    RolloutPolicy,
    SLOResult,
)
from slipway.api.phases import InconclusiveAction, Phase, Strategy, Verdict
from slipway.kube.children import build_deployment
from slipway.kube.observe import DeploymentState
from slipway.rollout.conditions import set_condition
from slipway.rollout.controls import read_controls
from slipway.rollout.core import (
    EPOCH,
    Action,
    ApplyObject,
    Decision,
    ScaleDeployment,
    SetActive,
    Situation,
)
from slipway.rollout.direct import achieved_weight, mark_succeeded, stable_deployment

DEFAULT_STEPS = (CanaryStep(weight=25), CanaryStep(weight=50), CanaryStep(weight=75))
ANALYSIS_HISTORY = 30
PROMOTED_BY_HAND = "promoted by annotation slipway.dev/action"


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


def analysis_settings(
    model: ModelDeployment, policy: RolloutPolicy | None = None
) -> AnalysisSettings:
    """The ModelDeployment's analysis settings, else the tier's, else the defaults."""
    tier = policy.spec.analysis if policy else None
    return model.spec.analysis or tier or AnalysisSettings()


def error_budget(model: ModelDeployment, policy: RolloutPolicy | None = None) -> ErrorBudget:
    """The release's false-decision budget: the tier's values (else the defaults) are
    ceilings a ModelDeployment may only lower, never raise."""
    tier = policy.spec.analysis if policy else None
    own = model.spec.analysis
    default = ErrorBudget()

    def pick(field: str) -> float:
        ceiling = getattr(tier, field, None) or getattr(default, field)
        lowered = getattr(own, field, None)
        return float(min(ceiling, lowered) if lowered is not None else ceiling)

    return ErrorBudget(pick("false_rollback"), pick("false_promotion"))


def split_replicas(total: int, weight: int) -> tuple[int, int]:
    """(candidate, stable) pod counts that come closest to ``weight`` percent.

    The stable keeps at least one pod in every step, so a rollback never starts it cold.
    """
    candidate = min(total, max(1, round(total * weight / 100)))
    return candidate, max(total - candidate, 1)


def analysis_applies(situation: Situation, model: ModelDeployment) -> bool:
    """Whether this release is in a canary step that SLO analysis gates.

    Only canary steps are analysed (a direct or first release has nothing to
    compare with), and a model without SLOs has nothing to query.
    """
    status = situation.release.status
    if not model.spec.slos or status.phase not in (Phase.PROGRESSING, Phase.PAUSED):
        return False
    first = model.status.stable_release in (None, situation.release.metadata.name)
    if first or status.strategy is not Strategy.CANARY:
        return False  # a first release is rolled out directly: nothing to compare with
    return status.step is not None and status.step <= len(steps_for(situation, model))


def analysis_due(situation: Situation) -> bool:
    """Whether the handler should run an analysis before deciding this tick."""
    model = situation.model
    if model is None or not analysis_applies(situation, model):
        return False
    status = situation.release.status
    own = situation.deployments.get(situation.release.metadata.name)
    if own is None or own.ready_replicas == 0:
        return False
    last = status.analysis[-1].at if status.analysis else None
    interval = parse_duration(analysis_settings(model, situation.policy).interval)
    return last is None or situation.now - last >= interval


def roll_out(situation: Situation, status: ModelReleaseStatus, model: ModelDeployment) -> Decision:
    """One cycle of a canary."""
    release, now = situation.release, situation.now
    name = release.metadata.name
    steps = steps_for(situation, model)
    settings = analysis_settings(model, situation.policy)
    total = model.spec.replicas
    own = situation.deployments.get(name)
    stable = stable_deployment(situation, model)
    controls = read_controls(release.metadata.annotations)
    actions: list[Action] = []
    if model.status.active_release != name:
        actions.append(SetActive(name))
    if status.step is None:
        status.step, status.step_started_at, status.weight_reached_at = 1, now, None
        status.steps = steps
    status.started_at = status.started_at or now

    if controls.abort:
        return roll_back(
            situation,
            status,
            model,
            actions,
            cond.ABORTED,
            "aborted by annotation slipway.dev/action",
        )

    held_inconclusive = False
    if situation.analysis is not None:
        record = AnalysisRecord(
            at=now, step=status.step, verdict=combine(situation.analysis), slos=situation.analysis
        )
        status.analysis = [*status.analysis, record][-ANALYSIS_HISTORY:]
        status.verdict = record.verdict
        proven = [
            r for r in situation.analysis if r.verdict is Verdict.FAIL and r.judge == SEQUENTIAL
        ]
        if proven:
            # An anytime-valid test that fails is evidence, not one noisy reading: act now.
            return roll_back(situation, status, model, actions, cond.SLO_FAILED, explain(proven))
        if record.verdict is Verdict.FAIL:
            record.counted = independent_failure(status, model, now)
            status.failures += int(record.counted)
            status.inconclusives = 0
        elif unmeasured(situation.analysis):
            status.inconclusives += 1
        else:
            status.inconclusives = 0  # evidence still accumulating is not a measuring problem
        if status.failures > settings.failure_limit:
            return roll_back(
                situation,
                status,
                model,
                actions,
                cond.SLO_FAILED,
                f"{status.failures} failed analyses (limit {settings.failure_limit}; failures"
                f" of overlapping windows count once): {explain(situation.analysis)}",
            )
        if status.inconclusives > settings.inconclusive_limit:
            why = (
                f"{status.inconclusives} inconclusive analyses in a row"
                f" (limit {settings.inconclusive_limit}): {explain(situation.analysis)}"
            )
            if settings.on_inconclusive is InconclusiveAction.ROLLBACK:
                return roll_back(situation, status, model, actions, cond.INCONCLUSIVE_LIMIT, why)
            held_inconclusive = True
            status.message = f"held: {why}; resumes when analysis passes"
    elif status.inconclusives > settings.inconclusive_limit:
        held_inconclusive = True  # still held until a passing analysis

    promoting = controls.promote or status.step > len(steps)
    if promoting:
        if status.step <= len(steps):
            status.step, status.step_started_at = len(steps) + 1, now  # promoted by hand
        return promote(situation, status, model, actions, own, stable, controls.promote)

    desired = steps[status.step - 1].weight
    candidate_replicas, stable_replicas = split_replicas(total, desired)
    actions += size(situation, model, own, candidate_replicas, stable, stable_replicas)
    status.desired_weight = desired
    status.weight = achieved_weight(own, stable)
    status.step_label = f"{status.step}/{len(steps)}"
    reached = (
        own is not None
        and own.replicas == candidate_replicas
        and own.ready_replicas >= candidate_replicas
        and (stable is None or stable.replicas == stable_replicas)
    )
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
        return _progress(situation, status, actions, Phase.PAUSED, reason, controls.problem)

    if not reached:
        if past_deadline(model, status.step_started_at, now):
            return roll_back(
                situation,
                status,
                model,
                actions,
                cond.PROGRESS_DEADLINE_EXCEEDED,
                f"step {status.step_label} did not reach weight {desired}% within progressDeadline"
                f" {model.spec.progress_deadline}",
            )
        status.message = (
            f"step {status.step_label}: waiting for weight {desired}% (now {status.weight}%)"
        )
        return _progress(
            situation, status, actions, Phase.PROGRESSING, cond.STEP_PROGRESSING, controls.problem
        )

    pause = parse_duration(steps[status.step - 1].pause)
    waited = now - (status.weight_reached_at or now)
    gated = bool(model.spec.slos)
    passed = not gated or _step_passed(status, status.weight_reached_at or now)
    overdue = waited - pause > parse_duration(model.spec.progress_deadline)
    if overdue and not passed:
        why = (
            f"step {status.step_label}: no passing analysis within progressDeadline"
            f" {model.spec.progress_deadline} after the pause ({_evidence_needed(status)})"
        )
        if settings.on_inconclusive is InconclusiveAction.ROLLBACK:
            return roll_back(situation, status, model, actions, cond.NOT_ENOUGH_EVIDENCE, why)
        status.message = f"held: {why}; resumes when analysis passes"
        return _progress(
            situation, status, actions, Phase.PAUSED, cond.NOT_ENOUGH_EVIDENCE, controls.problem
        )
    if waited >= pause and passed:
        status.step += 1
        status.step_started_at, status.weight_reached_at = now, None
        # Act on the next step now rather than one tick later.
        follow = roll_out(replace(situation, analysis=None), status, model)
        return Decision(follow.status, _merge(actions, follow.actions))

    status.message = _step_message(status, steps, desired, pause, waited >= pause, gated)
    return _progress(
        situation, status, actions, Phase.PROGRESSING, cond.STEP_PROGRESSING, controls.problem
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
    return f"{head}, pause done; waiting for evidence: {_evidence_needed(status)}"


def _evidence_needed(status: ModelReleaseStatus) -> str:
    """What the latest analysis still lacks, in words (samples needed, roughly when)."""
    latest = status.analysis[-1] if status.analysis else None
    if latest is None:
        return "no analysis yet"
    parts = []
    for result in latest.slos:
        if result.verdict is Verdict.PASS:
            continue
        if result.samples_needed is not None and result.samples is not None:
            eta = (
                f", about {format_duration(timedelta(seconds=result.eta_seconds))} at the"
                " current traffic"
                if result.eta_seconds
                else ""
            )
            parts.append(
                f"{result.slo} has {result.samples:,.0f} of ~{result.samples_needed:,.0f}"
                f" samples{eta}"
            )
        else:
            parts.append(result.reason)
    return "; ".join(parts) or f"latest analysis {latest.verdict.value}"


def unmeasured(results: list[SLOResult]) -> bool:
    """Some SLO could not be measured (no data, backend down): counts toward the limit."""
    return any(r.verdict is Verdict.INCONCLUSIVE and not r.gathering for r in results)


def independent_failure(status: ModelReleaseStatus, model: ModelDeployment, now: datetime) -> bool:
    """Whether a failure now judged no data a counted failure already judged: counted
    failures are at least one SLO window apart (overlapping windows share requests)."""
    window = max((parse_duration(slo.window) for slo in model.spec.slos), default=timedelta())
    last = max((r.at for r in status.analysis if r.counted), default=None)
    return last is None or now - last >= window


def past_deadline(model: ModelDeployment, since: datetime | None, now: datetime) -> bool:
    """Whether more than progressDeadline has passed since ``since`` (None: not started)."""
    return since is not None and now - since > parse_duration(model.spec.progress_deadline)


def _step_passed(status: ModelReleaseStatus, since: datetime) -> bool:
    """The latest analysis since the step's weight was reached passed."""
    # Strictly after: an analysis in the tick the weight was reached measured it before.
    in_step = [r for r in status.analysis if r.step == status.step and r.at > since]
    return bool(in_step) and in_step[-1].verdict is Verdict.PASS


def size(
    situation: Situation,
    model: ModelDeployment,
    own: DeploymentState | None,
    candidate_replicas: int,
    stable: DeploymentState | None,
    stable_replicas: int,
) -> list[Action]:
    """Actions that give the candidate and the stable the pod counts wanted."""
    actions: list[Action] = []
    if own is None:
        actions.append(ApplyObject(build_deployment(model, situation.release, candidate_replicas)))
    elif own.replicas != candidate_replicas:
        actions.append(ScaleDeployment(own.name, candidate_replicas))
    if stable is not None and stable.replicas != stable_replicas:
        actions.append(ScaleDeployment(stable.name, stable_replicas))
    return actions


def promote(
    situation: Situation,
    status: ModelReleaseStatus,
    model: ModelDeployment,
    actions: list[Action],
    own: DeploymentState | None,
    stable: DeploymentState | None,
    manual: bool,
) -> Decision:
    """Scale the candidate to full size; once available, it becomes the stable."""
    total = model.spec.replicas
    status.step_label = "promoting"
    status.desired_weight = 100
    if own is None:
        actions.append(ApplyObject(build_deployment(model, situation.release, total)))
    elif own.replicas != total:
        actions.append(ScaleDeployment(own.name, total))
    status.weight = achieved_weight(own, stable)
    if own is not None and own.replicas == total and own.available:
        done = mark_succeeded(situation, status, model)
        if manual:
            done.status.message = f"{done.status.message} ({PROMOTED_BY_HAND})"
        return Decision(done.status, _merge(actions, done.actions))
    if past_deadline(model, status.step_started_at, situation.now):
        return roll_back(
            situation,
            status,
            model,
            actions,
            cond.PROGRESS_DEADLINE_EXCEEDED,
            f"the candidate did not reach {total} available pods within progressDeadline"
            f" {model.spec.progress_deadline} while promoting",
        )
    ready = own.ready_replicas if own else 0
    how = "promoted by annotation, " if manual else ""
    status.message = f"promoting: {how}waiting for {ready}/{total} candidate pods"
    return _progress(situation, status, actions, Phase.PROGRESSING, cond.PROMOTING, None)


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
        a for a in actions if not isinstance(a, (ApplyObject, ScaleDeployment, SetActive))
    ]
    if own is not None and own.replicas != 0:
        kept.append(ScaleDeployment(own.name, 0))
    if stable is not None and stable.replicas != model.spec.replicas:
        kept.append(ScaleDeployment(stable.name, model.spec.replicas))
    if model.status.active_release in (None, name):
        kept.append(SetActive(None))
    status.phase = Phase.ROLLED_BACK
    status.weight, status.desired_weight = 0, 0
    status.completed_at = situation.now
    keeps = (
        f"; stable {model.status.stable_release!r} keeps serving"
        if model.status.stable_release
        else ""
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


def _progress(
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


def _merge(first: list[Action], second: list[Action]) -> list[Action]:
    """Both action lists, later scale/apply of the same Deployment replacing the earlier."""
    merged: list[Action] = []
    for action in [*first, *second]:
        if action in merged:
            continue
        if isinstance(action, ScaleDeployment):
            merged = [
                a for a in merged if not (isinstance(a, ScaleDeployment) and a.name == action.name)
            ]
        if isinstance(action, ApplyObject):
            key = action.body["metadata"]["name"]
            merged = [
                a
                for a in merged
                if not (isinstance(a, ApplyObject) and a.body["metadata"]["name"] == key)
            ]
        merged.append(action)
    return merged
