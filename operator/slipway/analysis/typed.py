"""Typed SLOs (errorRate, ratio, latency): fetch counts, hand them to a judge.

A typed SLO names counters, not a value: the operator builds the queries
(``judges.queries``, every label value escaped), fetches each release's
counts over the range the judge wants (its window, or everything since the
candidate started), and the judge decides. The result carries the evidence a
person can act on: both estimates, the confidence bound and the limit it is
held to, the samples so far, the samples needed and, at the candidate's
traffic so far, roughly how long that takes.

Measuring problems (Prometheus unreachable, no series at all, a bad answer)
are Inconclusive and *not* ``gathering``: they count against
``inconclusiveLimit``. A judge's own Inconclusive means the evidence is still
accumulating: it holds the step without counting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from slipway.analysis import verdicts
from slipway.analysis.judges import (
    Counts,
    CountSLO,
    Histogram,
    Judge,
    Judgement,
    LatencySLO,
    Scope,
    SLOBudget,
    Source,
    Tolerance,
)
from slipway.analysis.judges import queries as q
from slipway.analysis.judges.queries import selector
from slipway.analysis.provider import MetricProvider, QueryResult
from slipway.api.models import SLO, SLOResult, SLOThreshold
from slipway.api.phases import Verdict


class MeasureError(Exception):
    """Counts could not be had; the message says why."""

    def __init__(self, why: str, result: QueryResult | None = None) -> None:
        super().__init__(why)
        self.unreachable = bool(result and result.unreachable)


@dataclass(frozen=True, slots=True)
class Measured:
    """A typed SLO's result, and whether the backend was unreachable (stop querying)."""

    result: SLOResult
    unreachable: bool


def _tolerance(amount: float | None, threshold: SLOThreshold) -> Tolerance | None:
    if amount is None:
        return None
    if threshold.relative == "ratio":
        return Tolerance(relative=amount)
    return Tolerance(absolute=amount)


def count_spec(slo: SLO) -> CountSLO:
    """The judge's view of an errorRate or ratio SLO; ValueError when it says nothing usable."""
    t = slo.threshold
    if slo.error_rate is not None or (slo.ratio is not None and slo.ratio.better == "lower"):
        return CountSLO(slo.name, "lower", _tolerance(t.max_increase, t), t.max, "ratio")
    return CountSLO(slo.name, "higher", _tolerance(t.max_decrease, t), t.min, "ratio")


def latency_spec(slo: SLO) -> LatencySLO:
    """The judge's view of a latency SLO (``max`` in seconds, ``maxIncrease`` over the stable)."""
    assert slo.latency is not None
    t = slo.threshold
    return LatencySLO(
        slo.name,
        slo.latency.quantile,
        _tolerance(t.max_increase, t),
        t.max,
        slo.latency.min_effect,
    )


def _value(provider: MetricProvider, promql: str, what: str) -> float:
    result = provider.query(promql)
    if not result.ok:
        raise MeasureError(f"{what} query failed: {result.error}", result)
    if result.no_data:
        raise MeasureError(f"no data for the {what}: no series match (check the metric names)")
    assert result.value is not None
    return result.value


def counts_of(
    provider: MetricProvider, slo: SLO, labels: Mapping[str, str], seconds: int
) -> Counts:
    """One release's (events, total) over the last ``seconds``."""
    if slo.error_rate is not None:
        spec = slo.error_rate
        bad, total = q.error_rate_queries(labels, seconds, spec.requests, spec.errors)
        requests = _value(provider, total, f"{labels['release']} requests")
        # No error series at all (no error yet) is zero errors, not missing data.
        errors = provider.query(bad)
        if not errors.ok:
            raise MeasureError(f"errors query failed: {errors.error}", errors)
        return Counts(events=errors.value or 0.0, total=requests)
    assert slo.ratio is not None
    good, total = q.ratio_queries(labels, seconds, slo.ratio.good, slo.ratio.total)
    all_ = _value(provider, total, f"{labels['release']} total")
    hits = provider.query(good)
    if not hits.ok:
        raise MeasureError(f"good query failed: {hits.error}", hits)
    return Counts(events=hits.value or 0.0, total=all_)


@dataclass(frozen=True, slots=True)
class PerPod:
    """Both versions' per-pod counts on one step grid, and how long the candidate has served."""

    candidate: tuple[Source, ...]
    stable: tuple[Source, ...]
    served_seconds: float | None


def _history(provider: MetricProvider, promql: str, what: str) -> Mapping[str, q.Points]:
    result = provider.query_by(promql, q.SOURCE_LABEL)
    if not result.ok:
        raise MeasureError(f"{what} per-pod query failed: {result.error}", result)
    if result.series:
        raise MeasureError(f"{what} per-pod query answered an instant vector, not a range")
    return result.history or {}


def per_pod_of(
    provider: MetricProvider,
    slo: SLO,
    candidate: Mapping[str, str],
    stable: Mapping[str, str] | None,
    seconds: int,
    step: int = q.STEP_SECONDS,
) -> PerPod:
    """Each version's counts per pod and step over the last ``seconds`` (``queries.per_source``).

    ``served_seconds``: from the candidate's first step with a request to the
    last point (None before it served anything).
    """
    answers: list[tuple[Mapping[str, q.Points], Mapping[str, q.Points]]] = []
    for labels in (candidate, stable):
        if labels is None:
            answers.append(({}, {}))
            continue
        if slo.error_rate is not None:
            spec = slo.error_rate
            events_series = selector(spec.requests, labels, spec.errors)
            total_series = selector(spec.requests, labels)
        else:
            assert slo.ratio is not None
            events_series = selector(slo.ratio.good, labels)
            total_series = selector(slo.ratio.total, labels)
        bad, total = q.source_queries(events_series, total_series, seconds, step)
        what = labels["release"]
        answers.append((_history(provider, bad, what), _history(provider, total, what)))
    grid = q.grid_of(*(answer for pair in answers for answer in pair))
    mine = q.sources_from(*answers[0], grid)
    theirs = q.sources_from(*answers[1], grid)
    first = next(
        (i for i in range(len(grid) - 1) if any(s.totals[i] > 0 for s in mine)),
        None,
    )
    served = None if first is None else grid[-1] - grid[first]
    return PerPod(mine, theirs, served)


def served_seconds_of(
    provider: MetricProvider, series: str, seconds: int, step: int = q.STEP_SECONDS
) -> float | None:
    """Seconds since the first step in which ``series`` (a release's counter) grew, or None.

    Only for the ETA: a failed query leaves the release's start as the start.
    """
    result = provider.query_by(q.per_source(series, seconds, step), q.SOURCE_LABEL)
    if not result.ok or not result.history:
        return None
    grid = q.grid_of(result.history)
    pods = q.sources_from({}, result.history, grid)
    first = next((i for i in range(len(grid) - 1) if any(p.totals[i] > 0 for p in pods)), None)
    return None if first is None else grid[-1] - grid[first]


def histogram_of(
    provider: MetricProvider, slo: SLO, labels: Mapping[str, str], seconds: int
) -> Histogram:
    """One release's histogram buckets over the last ``seconds``."""
    assert slo.latency is not None
    result = provider.query_by(q.histogram_query(labels, seconds, slo.latency.histogram), "le")
    if not result.ok:
        raise MeasureError(f"{labels['release']} histogram query failed: {result.error}", result)
    if not result.series:
        raise MeasureError(f"no data for the {labels['release']} histogram: no series match")
    try:
        return q.histogram_from(result.series)
    except ValueError as error:
        raise MeasureError(str(error)) from None


def judge_typed(
    slo: SLO,
    provider: MetricProvider,
    judge: Judge,
    candidate: Mapping[str, str],
    stable: Mapping[str, str] | None,
    seconds: int,
    elapsed_seconds: float,
    budget: SLOBudget,
    look_seconds: float = 0.0,
) -> Measured:
    """Measure one typed SLO for both releases and judge it; never raises.

    ``candidate``/``stable`` are the label values selecting each release's
    series (namespace, release); ``elapsed_seconds`` is how long the counts
    have been accumulating (for the time-to-decision estimate).
    """
    try:
        if slo.latency is not None:
            spec = latency_spec(slo)
            mine = histogram_of(provider, slo, candidate, seconds)
            theirs = histogram_of(provider, slo, stable, seconds) if stable else None
            judged = judge.latency(spec, mine, theirs, budget)
            if judge.scope is Scope.SINCE_START and judged.verdict is Verdict.INCONCLUSIVE:
                # The ETA's pace: since the candidate's first request, as for counts.
                assert slo.latency is not None
                served = served_seconds_of(
                    provider, selector(f"{slo.latency.histogram}_count", candidate), seconds
                )
                if served is not None:
                    elapsed_seconds = min(elapsed_seconds, max(served, 1.0))
        else:
            count_slo = count_spec(slo)
            got = counts_of(provider, slo, candidate, seconds)
            base = counts_of(provider, slo, stable, seconds) if stable else None
            if judge.scope is Scope.SINCE_START:
                # Per-pod counts: how bursty errors are (and since when the candidate served).
                pods = per_pod_of(provider, slo, candidate, stable, seconds + q.LOOKBACK_SECONDS)
                got = Counts(got.events, got.total, pods.candidate)
                if base is not None:
                    base = Counts(base.events, base.total, pods.stable)
                if pods.served_seconds is not None:
                    elapsed_seconds = min(elapsed_seconds, max(pods.served_seconds, 1.0))
            judged = judge.counts(count_slo, got, base, budget)
    except MeasureError as error:
        result = verdicts.inconclusive(slo, str(error))
        return Measured(result.model_copy(update={"judge": judge.name}), error.unreachable)
    except ValueError as error:  # a threshold the kind cannot use (e.g. min on an error rate)
        result = verdicts.inconclusive(slo, str(error))
        return Measured(result.model_copy(update={"judge": judge.name}), False)
    return Measured(to_result(slo, judged, elapsed_seconds, look_seconds), False)


def to_result(
    slo: SLO, judged: Judgement, elapsed_seconds: float, look_seconds: float = 0.0
) -> SLOResult:
    """A judgement as status carries it, with the time it should take to decide."""
    shown = judged.status()

    def number(key: str) -> float | None:
        value = shown.get(key)
        return float(value) if isinstance(value, (int, float)) else None

    samples, needed = number("samples"), number("samplesNeeded")
    metric = shown.get("metric")

    def share(key: str) -> float | None:
        """A bound on a share: clamped to [0, 1], where a share lives."""
        value = number(key)
        return None if value is None else min(1.0, max(0.0, value))

    eta = eta_seconds(samples, needed, elapsed_seconds, look_seconds)
    return SLOResult(
        slo=slo.name,
        verdict=judged.verdict,
        value=number("candidate"),
        baseline=number("stable"),
        samples=samples,
        threshold=verdicts.describe_threshold(slo.threshold, number("stable")),
        reason=judged.message,
        judge=judged.judge,
        metric=str(metric) if metric is not None else None,
        lower=share("lower"),
        upper=share("upper"),
        limit=number("limit"),
        stable_samples=number("stableSamples"),
        samples_needed=needed,
        eta_seconds=eta,
        gathering=judged.verdict.value == "Inconclusive",
    )


def eta_seconds(
    samples: float | None, needed: float | None, served_seconds: float, look_seconds: float = 0.0
) -> float | None:
    """Seconds until ``needed`` samples at the pace of ``samples`` over ``served_seconds``.

    ``served_seconds`` should start when the candidate first served (the
    per-pod counts say when), not when the release started: pods that are
    still starting serve nothing, and counting that time slows the pace. The
    pace is taken half a Poisson standard deviation low, so the first ETAs,
    read off a few samples, are not short by chance; with ``look_seconds``
    (the analysis interval) it is rounded up to the look that can decide.
    """
    if not (samples and needed and served_seconds > 0 and needed > samples):
        return None
    # The pace half a Poisson sigma low: a few samples in a few seconds say little.
    pace = max(samples - 0.5 * math.sqrt(samples), 0.5 * samples) / served_seconds
    eta = (needed - samples) / pace
    if look_seconds > 0 and math.isfinite(eta):  # decided at a look: the first with the samples
        eta = math.ceil(eta / look_seconds) * look_seconds
    return round(eta, 1) if math.isfinite(eta) else None
