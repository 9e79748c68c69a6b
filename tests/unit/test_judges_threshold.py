"""The threshold judge: point estimates, the derived minimum sample count, failures per window."""

from __future__ import annotations

import math
import random

import pytest

from slipway.analysis.judges import (
    Counts,
    CountSLO,
    ErrorBudget,
    Histogram,
    LatencySLO,
    ThresholdJudge,
    Tolerance,
)
from slipway.analysis.judges.threshold import independent_failures, minimum_samples
from slipway.api.phases import Verdict

P, F, INC = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE
JUDGE = ThresholdJudge()
TODAY = ThresholdJudge(min_events=0, min_samples=20)
BUDGET = ErrorBudget().per_slo(1)
CEILING = CountSLO("errors", "lower", bound=0.02, metric="error rate")
RELATIVE = CountSLO("errors", "lower", Tolerance(relative=0.5), metric="error rate")
ACCURACY = CountSLO("accuracy", "higher", Tolerance(absolute=0.02), bound=0.8, metric="accuracy")


def test_one_error_decides_a_two_percent_ceiling_today_but_not_any_more() -> None:
    """The flaw the issue measured: minSamples 20 against a 2 % ceiling."""
    one_error = Counts(1, 20)
    assert TODAY.counts(CEILING, one_error, None, BUDGET).verdict is F
    judged = JUDGE.counts(CEILING, one_error, None, BUDGET)
    assert judged.verdict is INC
    assert "fewer than the 150 that <= 2% needs" in judged.message
    assert JUDGE.counts(CEILING, Counts(1, 150), None, BUDGET).verdict is P
    assert JUDGE.counts(CEILING, Counts(4, 150), None, BUDGET).verdict is F


@pytest.mark.parametrize(
    ("limit", "min_events", "min_samples", "expected"),
    [
        (0.02, 3, 0, 150),
        (0.1, 3, 0, 30),
        (0.1, 3, 50, 50),
        (0.02, 0, 20, 20),
        (0.0, 3, 0, math.inf),
        (0.0, 0, 20, 20),
    ],
)
def test_minimum_samples(
    limit: float, min_events: float, min_samples: int, expected: float
) -> None:
    assert minimum_samples(limit, min_events, min_samples) == expected


def test_the_stable_needs_the_same_minimum_when_compared_with() -> None:
    judged = JUDGE.counts(RELATIVE, Counts(10, 1000), Counts(0, 50), BUDGET)
    assert judged.verdict is INC  # a 0 % stable makes every limit 0: never judged by counting
    judged = JUDGE.counts(RELATIVE, Counts(10, 1000), Counts(1, 50), BUDGET)
    assert judged.verdict is INC  # limit 3 %: 100 samples needed, the stable has 50
    assert "(50 stable), fewer than the 100" in judged.message
    assert JUDGE.counts(RELATIVE, Counts(10, 1000), Counts(2, 100), BUDGET).verdict is P
    assert TODAY.counts(RELATIVE, Counts(10, 1000), Counts(0, 50), BUDGET).verdict is F


def test_relative_and_absolute_limits_for_a_higher_is_better_ratio() -> None:
    stable = Counts(9000, 10_000)  # 90 %
    assert JUDGE.counts(ACCURACY, Counts(880, 1000), stable, BUDGET).verdict is P  # on the limit
    assert JUDGE.counts(ACCURACY, Counts(870, 1000), stable, BUDGET).verdict is F
    judged = JUDGE.counts(ACCURACY, Counts(790, 1000), None, BUDGET)
    assert judged.verdict is F  # the guard rail fails without a stable
    assert [c.verdict for c in judged.checks] == [INC, F]


@pytest.mark.parametrize(
    ("candidate", "stable", "why"),
    [
        (Counts(0, 0), Counts(1, 100), "no data in the window"),
        (Counts(2, 1), None, "events out of only"),
        (Counts(1, 100), Counts(math.inf, 100), "not finite"),
    ],
)
def test_missing_or_broken_counts_are_inconclusive(
    candidate: Counts, stable: Counts | None, why: str
) -> None:
    judged = JUDGE.counts(RELATIVE, candidate, stable, BUDGET)
    assert judged.verdict is INC
    assert why in judged.message


def test_a_point_estimate_fails_identical_versions_often_and_a_regression_mostly() -> None:
    """Its per-look error rates, which the sequential judge exists to control."""
    rng = random.Random(11)

    def fail_rate(p_candidate: float) -> float:
        fails = 0
        for _ in range(400):
            c = sum(rng.random() < p_candidate for _ in range(500))
            s = sum(rng.random() < 0.01 for _ in range(1500))
            verdict = JUDGE.counts(RELATIVE, Counts(c, 500), Counts(s, 1500), BUDGET).verdict
            fails += verdict is F
        return fails / 400

    identical = fail_rate(0.01)
    assert 0.03 < identical < 0.3  # each look a coin with this bias: uncontrolled
    assert fail_rate(0.03) > 0.8


def test_failures_in_overlapping_windows_count_once() -> None:
    assert independent_failures([], 6) == 0
    assert independent_failures([10, 11, 12, 13], 6) == 1
    assert independent_failures([10, 16, 17, 30], 6) == 3
    assert independent_failures([30, 10, 16], 6) == 3  # any order


BOUNDS = (0.1, 0.25, 0.5, math.inf)
P95 = LatencySLO("p95", 0.95, Tolerance(relative=0.1), max_seconds=0.4)


def test_latency_quantile_as_prometheus_interpolates_it() -> None:
    stable = Histogram(BOUNDS, (800, 900, 1000, 1000))  # p95 halfway through (0.25, 0.5]
    candidate = Histogram(BOUNDS, (800, 900, 990, 1000))  # 50 of 90 into (0.25, 0.5]
    judged = JUDGE.latency(P95, candidate, stable, BUDGET)
    assert [c.candidate for c in judged.checks] == pytest.approx([0.3889, 0.3889], abs=1e-4)
    assert judged.checks[0].stable == pytest.approx(0.375)
    assert judged.verdict is P  # 0.389 <= 0.375 * 1.1 and <= 0.4


def test_latency_in_the_inf_bucket_reads_as_the_last_finite_bound_and_fails_the_ceiling() -> None:
    slow = Histogram(BOUNDS, (0, 0, 0, 100))
    judged = JUDGE.latency(P95, slow, None, BUDGET)
    assert judged.checks[-1].candidate == 0.5
    assert judged.verdict is F


def test_latency_needs_requests_enough_for_its_quantile() -> None:
    few = Histogram(BOUNDS, (50, 55, 59, 59))
    judged = JUDGE.latency(P95, few, few, BUDGET)
    assert judged.verdict is INC and "fewer than the 60" in judged.message
    assert TODAY.latency(P95, few, few, BUDGET).verdict is P


@pytest.mark.parametrize(
    "candidate",
    [Histogram(BOUNDS, (0, 0, 0, 0)), Histogram(BOUNDS[:-1], (1, 2, 3))],
    ids=["empty", "no-inf-bucket"],
)
def test_unreadable_latency_is_inconclusive(candidate: Histogram) -> None:
    assert JUDGE.latency(P95, candidate, None, BUDGET).verdict is INC
