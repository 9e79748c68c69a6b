"""The one analysis gate every strategy shares: when to analyse, and what a result means.

Which settings and false-decision budget apply (the ModelDeployment's, else
the tier's), whether a release is in a step that analysis gates, when the
next analysis is due, and how results count: a failure once per SLO window,
a measuring problem against inconclusiveLimit, evidence still accumulating
against nothing. Strategies ask; none of them re-implements these rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from slipway.analysis.judges import ErrorBudget
from slipway.analysis.judges.sequential import NAME as SEQUENTIAL
from slipway.analysis.verdicts import combine, explain
from slipway.api import conditions as cond
from slipway.api.durations import format_duration, parse_duration
from slipway.api.models import (
    AnalysisRecord,
    AnalysisSettings,
    ModelDeployment,
    ModelReleaseStatus,
    RolloutPolicy,
    ShadowSpec,
    SLOResult,
)
from slipway.api.phases import InconclusiveAction, Phase, Strategy, Verdict
from slipway.rollout.core import (
    Situation,
)


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


@dataclass(frozen=True)
class UndecidedLimits:
    """How much exposure a candidate may keep while the evidence leans toward a regression.

    ``weight``: the most weight it keeps then (None: its step's); ``longest``: how long it
    may lean without a pass before it is rolled back (None: no bound).
    """

    weight: int | None = None
    longest: timedelta | None = None

    @property
    def tracked(self) -> bool:
        """Whether either limit is set (only then is ``undecidedSince`` kept)."""
        return self.weight is not None or self.longest is not None


def undecided_limits(
    model: ModelDeployment, policy: RolloutPolicy | None = None
) -> UndecidedLimits:
    """The tier's undecidedWeight / maxUndecided, which a ModelDeployment may only make
    stricter (a lower weight, a shorter bound), never looser; either alone applies."""
    sources = [s for s in (policy.spec.analysis if policy else None, model.spec.analysis) if s]
    weights = [s.undecided_weight for s in sources if s.undecided_weight is not None]
    bounds = [parse_duration(s.max_undecided) for s in sources if s.max_undecided is not None]
    return UndecidedLimits(min(weights, default=None), min(bounds, default=None))


def _higher_is_better(model: ModelDeployment, slo: str) -> bool:
    spec = next((s for s in model.spec.slos if s.name == slo), None)
    return spec is not None and spec.ratio is not None and spec.ratio.better == "higher"


def leaning(results: list[SLOResult], model: ModelDeployment) -> list[SLOResult]:
    """The SLOs whose evidence leans toward a regression without deciding it.

    A sequential judge's open verdict leans when the candidate's estimate is on the wrong
    side of the limit its bound is held to (above it where lower is better, below it for
    accuracy-like ratios): more evidence is likelier to fail it than to pass it. A
    threshold Fail that did not roll back (within failureLimit) leans too: its window's
    point estimate broke the threshold.
    """
    found = []
    for result in results:
        if result.verdict is Verdict.FAIL:
            found.append(result)
        elif result.verdict is Verdict.INCONCLUSIVE and result.gathering:
            if result.value is None or result.limit is None:
                continue
            beyond = result.value - result.limit
            if (-beyond if _higher_is_better(model, result.slo) else beyond) > 0:
                found.append(result)
    return found


def lean_summary(results: list[SLOResult]) -> str:
    """The leaning SLOs in words: ``accuracy 0.841 vs limit 0.85``."""
    parts = []
    for r in results:
        if r.value is not None and r.limit is not None:
            parts.append(f"{r.slo} {r.value:.4g} vs limit {r.limit:.4g}")
        else:
            parts.append(f"{r.slo} {r.verdict.value} ({r.threshold})")
    return ", ".join(parts)


SHADOW_STEP = 0
"""The step number of a shadow phase (before a canary's or blue-green's step 1)."""


def shadow_for(situation: Situation, model: ModelDeployment) -> ShadowSpec | None:
    """The release's shadow phase: its own, else the ModelDeployment's; a tier that
    requires one, or strategy shadow, gets the defaults; None: no shadow phase."""
    release = situation.release
    spec = release.spec.shadow or model.spec.shadow
    strategy = release.status.strategy or release.spec.strategy or model.spec.default_strategy
    required = situation.policy is not None and situation.policy.spec.require_shadow
    if spec is None and (required or strategy is Strategy.SHADOW):
        spec = ShadowSpec()
    return spec


def agreement_checked(situation: Situation, model: ModelDeployment) -> bool:
    """The release is in its shadow phase and prediction agreement is part of its gate."""
    spec = shadow_for(situation, model)
    status = situation.release.status
    return status.step == SHADOW_STEP and spec is not None and spec.min_agreement is not None


def analysis_applies(situation: Situation, model: ModelDeployment) -> bool:
    """Whether this release is in a step that SLO analysis gates.

    Canary steps and both blue-green steps (preview, after the switch) are
    analysed; a direct or first release has nothing to compare with, and a
    model without SLOs has nothing to query.
    """
    status = situation.release.status
    gated = bool(model.spec.slos) or agreement_checked(situation, model)
    if not gated or status.phase not in (Phase.PROGRESSING, Phase.PAUSED):
        return False
    first = model.status.stable_release in (None, situation.release.metadata.name)
    if first or status.step is None:
        return False  # a first release is rolled out directly: nothing to compare with
    if status.strategy in (Strategy.BLUE_GREEN, Strategy.SHADOW) or status.step == SHADOW_STEP:
        return True
    steps = status.steps or []  # recorded when the canary started
    return status.strategy is Strategy.CANARY and status.step <= len(steps)


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


def step_passed(status: ModelReleaseStatus, since: datetime) -> bool:
    """The latest analysis since the step's weight was reached passed."""
    # Strictly after: an analysis in the tick the weight was reached measured it before.
    in_step = [r for r in status.analysis if r.step == status.step and r.at > since]
    return bool(in_step) and in_step[-1].verdict is Verdict.PASS


def unmeasured(results: list[SLOResult]) -> bool:
    """Some SLO could not be measured (no data, backend down): counts toward the limit."""
    return any(r.verdict is Verdict.INCONCLUSIVE and not r.gathering for r in results)


def independent_failure(status: ModelReleaseStatus, model: ModelDeployment, now: datetime) -> bool:
    """Whether a failure now judged no data a counted failure already judged: counted
    failures are at least one SLO window apart (overlapping windows share requests)."""
    window = max((parse_duration(slo.window) for slo in model.spec.slos), default=timedelta())
    last = max((r.at for r in status.analysis if r.counted), default=None)
    return last is None or now - last >= window


def evidence_needed(status: ModelReleaseStatus) -> str:
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


ANALYSIS_HISTORY = 30
"""Analysis records kept in a release's status."""


@dataclass(frozen=True)
class Tick:
    """What one analysis tick means for the release, for any strategy."""

    rollback: tuple[str, str] | None = None
    """(reason, why) when the release must be rolled back now."""
    held: str | None = None
    """Set while the release is held past inconclusiveLimit (the message, or '' to keep it)."""


def record_analysis(
    situation: Situation,
    status: ModelReleaseStatus,
    model: ModelDeployment,
    settings: AnalysisSettings,
) -> Tick:
    """Record this tick's analysis in status and say what it decides.

    A sequential Fail is evidence and rolls back at once; threshold failures
    count once per SLO window up to failureLimit; measuring problems count
    toward inconclusiveLimit (then hold or roll back); evidence that is still
    accumulating counts toward nothing.
    """
    results = situation.analysis
    if results is None:
        held = status.inconclusives > settings.inconclusive_limit
        return Tick(held="" if held else None)  # still held until a passing analysis
    now = situation.now
    step = status.step if status.step is not None else 1
    record = AnalysisRecord(at=now, step=step, verdict=combine(results), slos=results)
    status.analysis = [*status.analysis, record][-ANALYSIS_HISTORY:]
    status.verdict = record.verdict
    proven = [r for r in results if r.verdict is Verdict.FAIL and r.judge == SEQUENTIAL]
    if proven:
        # An anytime-valid test that fails is evidence, not one noisy reading: act now.
        return Tick(rollback=(cond.SLO_FAILED, explain(proven)))
    if record.verdict is Verdict.FAIL:
        record.counted = independent_failure(status, model, now)
        status.failures += int(record.counted)
        status.inconclusives = 0
    elif unmeasured(results):
        status.inconclusives += 1
    else:
        status.inconclusives = 0  # evidence still accumulating is not a measuring problem
    if status.failures > settings.failure_limit:
        return Tick(
            rollback=(
                cond.SLO_FAILED,
                f"{status.failures} failed analyses (limit {settings.failure_limit}; failures"
                f" of overlapping windows count once): {explain(results)}",
            )
        )
    if status.inconclusives > settings.inconclusive_limit:
        why = (
            f"{status.inconclusives} inconclusive analyses in a row"
            f" (limit {settings.inconclusive_limit}): {explain(results)}"
        )
        if settings.on_inconclusive is InconclusiveAction.ROLLBACK:
            return Tick(rollback=(cond.INCONCLUSIVE_LIMIT, why))
        status.message = f"held: {why}; resumes when analysis passes"
        return Tick(held=status.message)
    return Tick()
