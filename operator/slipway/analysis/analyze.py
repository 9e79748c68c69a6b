"""One analysis tick: render each SLO's queries, ask the provider, judge.

The tick is the only place that talks to the metrics backend, so it is also
where load is decided. Per SLO it sends at most one query for the candidate,
one for the stable baseline (relative thresholds only, same window), and one
for the sample count (only with a samples query and ``minSamples`` > 0);
``queries_per_tick`` is that number, for benchmarks and capacity planning.
It sends fewer, never more: once the backend is unreachable the rest of the
tick is Inconclusive without further waiting, and an SLO whose candidate
query fails skips its other queries.

Nothing here raises for bad data or a bad template: every SLO gets a result,
and a template error is an Inconclusive verdict naming the problem.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from slipway.analysis import templates, verdicts
from slipway.analysis.judges import ErrorBudget, Judge, Scope, SLOBudget, make_judge, queries
from slipway.analysis.provider import MetricProvider, QueryResult
from slipway.analysis.typed import Measured, judge_typed
from slipway.api.durations import parse_duration
from slipway.api.models import SLO, AnalysisSettings, SLOResult

log = logging.getLogger(__name__)


def _needs_samples(slo: SLO, settings: AnalysisSettings) -> bool:
    return bool(slo.samples_query) and settings.min_samples > 0


def queries_for(slo: SLO, settings: AnalysisSettings) -> int:
    """Queries one SLO costs per tick when the backend answers everything."""
    if slo.latency is not None:
        # the candidate's and the stable's buckets; the sequential judge, while undecided,
        # also reads since when the candidate served (its ETA)
        return 3 if make_judge(settings.judge).scope is Scope.SINCE_START else 2
    if slo.typed:
        # events and total for both releases; the sequential judge also reads them per pod
        return 8 if make_judge(settings.judge).scope is Scope.SINCE_START else 4
    return 1 + int(verdicts.is_relative(slo.threshold)) + int(_needs_samples(slo, settings))


def queries_per_tick(slos: Sequence[SLO], settings: AnalysisSettings) -> int:
    """Queries a whole tick costs at most (the benchmark's number)."""
    return sum(queries_for(slo, settings) for slo in slos)


def _describe(result: QueryResult, what: str) -> str:
    return f"{what} query failed: {result.error}"


@dataclass(frozen=True, slots=True)
class Evidence:
    """Since when typed SLOs count (the candidate's start) and the error budget they share."""

    started: datetime
    now: datetime
    budget: ErrorBudget = field(default_factory=ErrorBudget)


def analyze(
    slos: Sequence[SLO],
    provider: MetricProvider,
    variables_for_candidate: Mapping[str, str],
    variables_for_stable: Mapping[str, str] | None,
    settings: AnalysisSettings,
    evidence: Evidence | None = None,
) -> list[SLOResult]:
    """Judge every SLO of one tick, in order; one result per SLO.

    ``variables_for_candidate`` / ``variables_for_stable`` hold namespace,
    deployment, release and version (see ``templates.release_variables``);
    each SLO adds its own window. ``variables_for_stable`` is None when there
    is no stable release: relative thresholds are then Inconclusive. Typed
    SLOs go to ``settings.judge`` (the sequential one counts from
    ``evidence.started``); raw PromQL SLOs to the threshold rules.
    """
    results: list[SLOResult] = []
    down: QueryResult | None = None  # set once the backend stopped answering
    judge = make_judge(settings.judge)
    budget = (evidence.budget if evidence else ErrorBudget()).per_slo(len(slos))

    for slo in slos:
        if down is not None:
            results.append(verdicts.inconclusive(slo, f"not queried: {down.error}"))
            continue
        if slo.typed:
            measured = _typed(
                slo,
                provider,
                judge,
                variables_for_candidate,
                variables_for_stable,
                evidence,
                budget,
                parse_duration(settings.interval).total_seconds(),
            )
            if measured.unreachable:
                down = QueryResult.failed(measured.result.reason, unreachable=True)
            results.append(measured.result)
            continue
        assert slo.query is not None
        window = {templates.WINDOW: slo.window}
        try:
            candidate_q = templates.render(
                slo.query, {**variables_for_candidate, **window}, slo=slo.name
            )
            stable_q = (
                templates.render(slo.query, {**variables_for_stable, **window}, slo=slo.name)
                if verdicts.is_relative(slo.threshold) and variables_for_stable is not None
                else None
            )
            samples_q = (
                templates.render(
                    slo.samples_query or "", {**variables_for_candidate, **window}, slo=slo.name
                )
                if _needs_samples(slo, settings)
                else None
            )
        except ValueError as err:
            # The name is already in the message; keep the sentence readable.
            text = str(err).removeprefix(f"SLO {slo.name!r}: ")
            results.append(verdicts.inconclusive(slo, f"template error: {text}"))
            continue

        candidate = provider.query(candidate_q)
        if not candidate.ok:
            down = candidate if candidate.unreachable else None
            results.append(verdicts.inconclusive(slo, _describe(candidate, "candidate")))
            continue

        samples: float | None = None
        if samples_q is not None:
            counted = provider.query(samples_q)
            if not counted.ok:
                down = counted if counted.unreachable else None
                results.append(
                    verdicts.inconclusive(slo, _describe(counted, "samples"), value=candidate.value)
                )
                continue
            samples = counted.value

        baseline: float | None = None
        baseline_error: str | None = None
        if stable_q is not None:
            stable = provider.query(stable_q)
            if stable.ok:
                baseline = stable.value
            else:
                down = stable if stable.unreachable else None
                baseline_error = _describe(stable, "stable baseline")
        elif verdicts.is_relative(slo.threshold):
            baseline_error = "no stable release to compare with"

        result = verdicts.judge(
            slo,
            candidate.value,
            baseline,
            samples,
            settings.min_samples,
            baseline_error=baseline_error,
        )
        log.debug("%s: %s", result.verdict, result.reason)
        results.append(result)
    return results


def _typed(
    slo: SLO,
    provider: MetricProvider,
    judge: Judge,
    candidate: Mapping[str, str],
    stable: Mapping[str, str] | None,
    evidence: Evidence | None,
    budget: SLOBudget,
    look_seconds: float = 0.0,
) -> Measured:
    """A typed SLO over the range its judge wants: the window, or since the start."""
    window = int(parse_duration(slo.window).total_seconds())
    if judge.scope is Scope.SINCE_START and evidence is not None:
        seconds = queries.range_since(evidence.started, evidence.now)
        elapsed = (evidence.now - evidence.started).total_seconds()
    else:
        seconds, elapsed = max(window, 1), float(window)

    def labels(variables: Mapping[str, str]) -> dict[str, str]:
        return {
            templates.NAMESPACE: variables[templates.NAMESPACE],
            templates.RELEASE: variables[templates.RELEASE],
        }

    return judge_typed(
        slo,
        provider,
        judge,
        labels(candidate),
        labels(stable) if stable is not None else None,
        seconds,
        elapsed,
        budget,
        look_seconds,
    )
