"""What the judges stand on: the registry, the error budget, histogram reading, PromQL."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from slipway.analysis.judges import (
    DEFAULT_JUDGE,
    JUDGES,
    Counts,
    CountSLO,
    ErrorBudget,
    Histogram,
    LatencySLO,
    Scope,
    SequentialJudge,
    ThresholdJudge,
    Tolerance,
    histograms,
    make_judge,
    queries,
)
from slipway.api.phases import Verdict


def test_registry_builds_each_judge_and_names_the_known_ones() -> None:
    assert DEFAULT_JUDGE == "sequential"
    assert isinstance(make_judge(), SequentialJudge)
    assert isinstance(make_judge("threshold"), ThresholdJudge)
    for name, factory in JUDGES.items():
        judge = factory()
        assert judge.name == name
    assert make_judge("sequential").scope is Scope.SINCE_START
    assert make_judge("threshold").scope is Scope.WINDOW
    with pytest.raises(ValueError, match="unknown judge 'bayes'; known: sequential, threshold"):
        make_judge("bayes")


def test_the_false_rollback_budget_is_split_over_slos_and_the_promotion_budget_is_not() -> None:
    per_slo = ErrorBudget(false_rollback=0.04, false_promotion=0.05).per_slo(4)
    assert per_slo.fail_alpha == pytest.approx(0.01)
    assert per_slo.pass_alpha == 0.05
    assert ErrorBudget().per_slo(0).fail_alpha == 0.05
    with pytest.raises(ValueError):
        ErrorBudget(false_rollback=0.0)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: CountSLO("x", "lower"), "needs a tolerance, a bound or both"),
        (lambda: CountSLO("x", "lower", bound=1.5), "in \\[0, 1\\]"),
        (lambda: LatencySLO("x", 1.0, Tolerance()), "quantile"),
        (lambda: LatencySLO("x", 0.9), "needs a tolerance"),
        (lambda: Tolerance(relative=-0.1), ">= 0"),
    ],
)
def test_specs_refuse_what_cannot_be_judged(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_tolerance_reads_as_a_limit() -> None:
    assert Tolerance(relative=0.5).describe() == "stable*1.5"
    assert Tolerance(absolute=0.02).describe("higher") == "stable-0.02"
    assert Tolerance(relative=0.1, absolute=0.05).describe("lower", "s") == "stable*1.1+0.05s"


BOUNDS = (0.1, 0.25, 0.5, math.inf)


def test_histogram_quantile_matches_prometheus_rules() -> None:
    h = Histogram(BOUNDS, (50, 80, 100, 100))
    assert histograms.quantile(h, 0.5) == pytest.approx(0.1)
    assert histograms.quantile(h, 0.65) == pytest.approx(0.175)  # halfway into (0.1, 0.25]
    assert histograms.quantile(Histogram(BOUNDS, (0, 0, 90, 100)), 0.95) == 0.5  # +Inf bucket
    assert math.isnan(histograms.quantile(Histogram(BOUNDS, (0, 0, 0, 0)), 0.5))


def test_tail_share_falls_as_a_power_law_between_bounds() -> None:
    h = Histogram(BOUNDS, (600, 900, 990, 1000))  # 40 %, 10 %, 1 % slower
    assert histograms.tail_share_at(h, 0.25) == pytest.approx(0.1)
    midway = math.sqrt(0.25 * 0.5)  # geometric middle: geometric mean of the shares
    assert histograms.tail_share_at(h, midway) == pytest.approx(math.sqrt(0.1 * 0.01))
    assert histograms.tail_share_at(h, 0.05) == pytest.approx(0.7)  # linear from 0 s
    assert histograms.tail_share_at(h, 9.0) == pytest.approx(0.01)


def test_histogram_problems_and_repairs() -> None:
    assert histograms.problem(Histogram(BOUNDS, (1, 2, 3, 4))) is None
    assert histograms.problem(Histogram(BOUNDS, (1, 2, 1.7, 4))) is None  # rounding dip
    assert histograms.cleaned(Histogram(BOUNDS, (1, 2, 1.7, 4))).cumulative == (1, 2, 2, 4)
    assert "decrease" in (histograms.problem(Histogram(BOUNDS, (1, 2, 0, 4))) or "")
    assert "negative" in (histograms.problem(Histogram(BOUNDS, (-1, 2, 3, 4))) or "")
    first = Histogram((0.1, 0.2, 0.5, math.inf), (1, 2, 3, 4))
    second = Histogram((0.1, 0.25, 0.5, math.inf), (5, 6, 7, 8))
    a, b = histograms.common(first, second)
    assert a.bounds == b.bounds == (0.1, 0.5, math.inf)
    assert (a.cumulative, b.cumulative) == ((1, 3, 4), (5, 7, 8))
    later = Histogram(BOUNDS, (10, 20, 30, 40))
    assert histograms.difference(later, Histogram(BOUNDS, (1, 2, 3, 4))).cumulative == (
        9,
        18,
        27,
        36,
    )


RELEASE = {"namespace": "ml", "release": 'fraud"} or vector(1) #'}


def test_queries_escape_release_names_and_sum_per_series_growth() -> None:
    errors, total = queries.error_rate_queries(RELEASE, 300)
    assert errors == (
        'sum(max_over_time(model_requests_total{namespace="ml",'
        'release="fraud\\"} or vector(1) #",code=~"5.."}[300s])'
        ' - min_over_time(model_requests_total{namespace="ml",'
        'release="fraud\\"} or vector(1) #",code=~"5.."}[300s]))'
    )
    assert 'code=~"5.."' not in total
    good, labelled = queries.ratio_queries({"release": "v2"}, 60)
    assert good.startswith('sum(max_over_time(model_predictions_correct_total{release="v2"}[60s])')
    assert "model_predictions_total{" in labelled
    bucket = queries.histogram_query({"release": "v2"}, 60)
    assert bucket.startswith("sum by (le) (max_over_time(model_request_duration_seconds_bucket{")


@pytest.mark.parametrize(
    "bad",
    ['code="5"} or vector(1)', 'code=~"5..") #', "code", '"x"="y"'],
)
def test_extra_matchers_must_be_label_matchers(bad: str) -> None:
    with pytest.raises(ValueError, match="not a list of label matchers"):
        queries.selector("model_requests_total", {}, bad)


def test_selector_refuses_bad_names_and_accepts_several_matchers() -> None:
    assert queries.selector("m", {}, 'a="1", b!~"x|y",') == 'm{a="1", b!~"x|y"}'
    with pytest.raises(ValueError, match="metric name"):
        queries.selector("m{}", {})
    with pytest.raises(ValueError, match="label name"):
        queries.selector("m", {"a-b": "x"})
    with pytest.raises(ValueError, match="at least 1 second"):
        queries.increase("m", 0)


def test_range_since_reaches_back_past_the_start() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert queries.range_since(start, start + timedelta(seconds=90.2)) == 91 + 15
    assert queries.range_since(start, start, scrape_seconds=5) == 6


def test_histogram_from_prometheus_le_labels() -> None:
    h = queries.histogram_from({"+Inf": 10.0, "0.25": 7.0, "0.1": 3.0})
    assert h == Histogram((0.1, 0.25, math.inf), (3.0, 7.0, 10.0))
    with pytest.raises(ValueError, match="le='fast'"):
        queries.histogram_from({"fast": 1.0})


@pytest.mark.parametrize("name", sorted(JUDGES))
def test_inconclusive_never_passes_and_a_pass_rests_on_its_bounds(name: str) -> None:
    """Over random counts: an SLO passes only when every check passes, and a sequential
    Pass has its confidence bound on the right side of the limit."""
    rng = random.Random(13)
    judge = make_judge(name)
    budget = ErrorBudget().per_slo(2)
    slo = CountSLO("errors", "lower", Tolerance(relative=0.5), bound=0.05, metric="error rate")
    passes = 0
    for _ in range(400):
        n_c, n_s = rng.choice([0, 10, 200, 5000]), rng.choice([0, 30, 600, 15_000])
        candidate = Counts(round(n_c * rng.uniform(0, 0.04)), n_c)
        stable = Counts(round(n_s * rng.uniform(0, 0.03)), n_s) if rng.random() < 0.8 else None
        judged = judge.counts(slo, candidate, stable, budget)
        if judged.verdict is Verdict.PASS:
            passes += 1
            assert all(c.verdict is Verdict.PASS for c in judged.checks)
            for check in judged.checks:
                if check.upper is not None and check.limit is not None:
                    assert check.upper < check.limit
        if any(c.verdict is Verdict.INCONCLUSIVE for c in judged.checks):
            assert judged.verdict is not Verdict.PASS
    assert passes > 0  # the property was exercised
