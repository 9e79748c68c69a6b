"""The sequential judge: error rates under repeated looks, power, samples needed, edge cases."""

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
    SequentialJudge,
    SLOBudget,
    Tolerance,
)
from slipway.analysis.judges.sequential import (
    decide,
    half_width,
    one_sided_level,
    restricted_rates,
    tail_bucket,
)
from slipway.api.phases import Verdict

P, F, INC = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE
JUDGE = SequentialJudge()
BUDGET = ErrorBudget().per_slo(1)  # 5 % false rollback, 5 % false promotion
ERRORS = CountSLO("errors", "lower", Tolerance(relative=0.5), metric="error rate")
ACCURACY = CountSLO("accuracy", "higher", Tolerance(absolute=0.02), metric="accuracy")
BOUNDS = (0.05, 0.1, 0.25, 0.5, math.inf)


def binomial(rng: random.Random, n: int, p: float) -> int:
    """Binomial draw by the normal approximation with continuity (fast, fine for n*p >= 5)."""
    if n * p < 30:
        return sum(rng.random() < p for _ in range(n))
    return max(0, min(n, round(rng.gauss(n * p, math.sqrt(n * p * (1 - p))))))


def first_decision(
    rng: random.Random,
    slo: CountSLO,
    p_candidate: float,
    p_stable: float,
    per_look: int,
    looks: int,
    budget: SLOBudget = BUDGET,
) -> Verdict:
    """The verdict of the first look that decides (a rollout stops there), else Inconclusive.

    Each look adds ``per_look`` candidate requests and three times as many stable ones
    (a 25 % step); the counts are what ``p`` says is the share of events.
    """
    events_c = total_c = events_s = total_s = 0
    for _ in range(looks):
        total_c += per_look
        total_s += 3 * per_look
        events_c += binomial(rng, per_look, p_candidate)
        events_s += binomial(rng, 3 * per_look, p_stable)
        verdict = JUDGE.counts(
            slo, Counts(events_c, total_c), Counts(events_s, total_s), budget
        ).verdict
        if verdict is not INC:
            return verdict
    return INC


def rates(verdicts: list[Verdict]) -> tuple[float, float]:
    return verdicts.count(F) / len(verdicts), verdicts.count(P) / len(verdicts)


def test_identical_versions_are_almost_never_failed_and_mostly_passed() -> None:
    rng = random.Random(1)
    outcomes = [first_decision(rng, ERRORS, 0.01, 0.01, 400, 60) for _ in range(150)]
    fail, passed = rates(outcomes)
    assert fail <= 0.01
    assert passed >= 0.8  # 24,000 candidate requests rule out x1.5


def test_false_rollback_stays_within_budget_at_the_tolerance_despite_sixty_looks() -> None:
    """The hardest case for Fail: the candidate sits exactly on its limit (1.5 x stable)."""
    rng = random.Random(2)
    outcomes = [first_decision(rng, ERRORS, 0.015, 0.01, 100, 60) for _ in range(500)]
    fail, passed = rates(outcomes)
    assert fail <= BUDGET.fail_alpha  # 5 %; a fixed test read 60 times would be far above
    assert passed <= BUDGET.pass_alpha


def test_false_promotion_stays_within_budget_for_a_regression_beyond_tolerance() -> None:
    rng = random.Random(3)
    outcomes = [first_decision(rng, ACCURACY, 0.88, 0.90, 100, 60) for _ in range(400)]
    _, passed = rates(outcomes)
    assert passed <= BUDGET.pass_alpha


@pytest.mark.parametrize(
    ("slo", "candidate", "stable"),
    [(ERRORS, 0.03, 0.01), (ACCURACY, 0.84, 0.90)],
    ids=["error-rate-x3", "accuracy-minus-6-points"],
)
def test_a_clear_regression_is_failed(slo: CountSLO, candidate: float, stable: float) -> None:
    rng = random.Random(4)
    outcomes = [first_decision(rng, slo, candidate, stable, 250, 40) for _ in range(100)]
    fail, passed = rates(outcomes)
    assert fail >= 0.95
    assert passed == 0


def test_samples_needed_is_enough_to_decide_most_of_the_time() -> None:
    """Run each rollout to the sample count the judge named on the true rates."""
    planned = JUDGE.counts(ACCURACY, Counts(84, 100), Counts(270, 300), BUDGET)
    need = planned.deciding.samples_needed if planned.deciding else None
    assert need is not None and 500 < need < 5000
    rng = random.Random(5)
    looks = math.ceil(need / 50)
    outcomes = [first_decision(rng, ACCURACY, 0.84, 0.90, 50, looks) for _ in range(150)]
    fail, _ = rates(outcomes)
    assert fail >= 0.9


def test_samples_needed_grows_as_the_estimate_nears_the_limit() -> None:
    def need(errors: int) -> float:
        check = JUDGE.counts(ERRORS, Counts(errors, 1000), Counts(30, 3000), BUDGET).deciding
        assert check is not None and check.samples_needed is not None
        return check.samples_needed

    assert need(40) < need(30) < need(25)  # 4 %, 3 %, 2.5 % against a 1.5 % limit


def test_an_estimate_on_the_limit_is_planned_for_a_candidate_as_good_as_the_stable() -> None:
    """samplesNeeded plans for a candidate like the stable (issue 13), so an estimate sitting on
    the limit still gets a count: more than one well inside it, since its errors so far weigh."""

    def need(errors: int) -> float:
        judged = JUDGE.counts(ERRORS, Counts(errors, 1000), Counts(30, 3000), BUDGET)
        assert judged.verdict is INC and judged.deciding is not None
        assert judged.deciding.samples_needed is not None
        assert "90% sure if the candidate is as good as the stable" in judged.message
        return judged.deciding.samples_needed

    assert 1000 < need(10) < need(15) < 1e6


def test_one_sided_level_spends_at_most_twice_alpha() -> None:
    for alpha in (0.001, 0.0125, 0.05):
        assert alpha < one_sided_level(alpha) < 2 * alpha


def test_half_width_shrinks_with_information() -> None:
    widths = [half_width(v, tau=0.01, alpha=0.05) for v in (1e-3, 1e-4, 1e-5, 1e-6)]
    assert widths == sorted(widths, reverse=True)


@pytest.mark.parametrize(
    ("bad_c", "n_c", "bad_s", "n_s", "a", "b"),
    [
        (30, 1000, 30, 3000, 1.5, 0.0),
        (0, 50, 0, 150, 1.5, 0.0),
        (0, 50, 3, 150, 1.0, 0.01),
        (160, 1000, 300, 3000, 0.98, 0.02),
        (1000, 1000, 0, 10, 1.0, 0.0),
    ],
)
def test_restricted_rates_lie_on_the_boundary_and_maximise_the_likelihood(
    bad_c: float, n_c: float, bad_s: float, n_s: float, a: float, b: float
) -> None:
    qc, qs = restricted_rates(bad_c, n_c, bad_s, n_s, a, b)
    assert qc == pytest.approx(a * qs + b)

    def loglik(s: float) -> float:
        q = a * s + b
        terms = ((bad_c, q), (n_c - bad_c, 1 - q), (bad_s, s), (n_s - bad_s, 1 - s))
        return sum(k * math.log(x) if k else 0.0 for k, x in terms if k == 0 or x > 0) - sum(
            math.inf for k, x in terms if k and x <= 0
        )

    top = min(1.0, (1 - b) / a)
    best = max(loglik(top * i / 2000) for i in range(2001))
    assert loglik(qs) >= best - 1e-6


def test_a_zero_candidate_count_with_few_samples_cannot_pass() -> None:
    """Zero errors in 50 requests is no proof of a 1 % error rate being within x1.5."""
    judged = JUDGE.counts(ERRORS, Counts(0, 50), Counts(2, 150), BUDGET)
    assert judged.verdict is INC


@pytest.mark.parametrize(
    ("candidate", "stable", "why"),
    [
        (Counts(0, 0), Counts(5, 100), "no candidate samples"),
        (Counts(1, 10), None, "no stable samples"),
        (Counts(1, 10), Counts(0, 0), "no stable samples"),
        (Counts(11, 10), Counts(0, 10), "events out of only"),
        (Counts(-1, 10), Counts(0, 10), "negative"),
        (Counts(math.nan, 10), Counts(0, 10), "not finite"),
        (Counts(0, 1000), Counts(0, 3000), "no events yet"),
    ],
)
def test_missing_or_broken_counts_are_inconclusive(
    candidate: Counts, stable: Counts | None, why: str
) -> None:
    judged = JUDGE.counts(ERRORS, candidate, stable, BUDGET)
    assert judged.verdict is INC
    assert why in judged.message


def test_zero_events_pass_an_absolute_tolerance_with_enough_samples() -> None:
    slo = CountSLO("errors", "lower", Tolerance(absolute=0.005), metric="error rate")
    assert JUDGE.counts(slo, Counts(0, 20), Counts(0, 60), BUDGET).verdict is INC
    assert JUDGE.counts(slo, Counts(0, 20_000), Counts(0, 60_000), BUDGET).verdict is P


def test_an_inconclusive_check_keeps_a_passing_one_from_passing_the_slo() -> None:
    slo = CountSLO("errors", "lower", Tolerance(relative=0.5), bound=0.05, metric="error rate")
    judged = JUDGE.counts(slo, Counts(100, 100_000), None, BUDGET)
    assert [c.verdict for c in judged.checks] == [INC, P]
    assert judged.verdict is INC


def test_a_guard_rail_fails_without_a_stable() -> None:
    slo = CountSLO("errors", "lower", Tolerance(relative=0.5), bound=0.02, metric="error rate")
    judged = JUDGE.counts(slo, Counts(100, 1000), None, BUDGET)
    assert judged.verdict is F
    assert "above 2% (max 0.02)" in judged.message


def test_verdict_evidence_reads_in_the_metric_own_terms() -> None:
    judged = JUDGE.counts(ACCURACY, Counts(8400, 10_000), Counts(27_000, 30_000), BUDGET)
    check = judged.deciding
    assert judged.verdict is F and check is not None
    assert check.candidate == pytest.approx(0.84)
    assert check.stable == pytest.approx(0.90)
    assert check.limit == pytest.approx(0.88)
    assert check.lower is not None and check.upper is not None
    assert check.lower < 0.84 < check.upper < 0.88
    assert "accuracy 84.0% vs stable 90.0%: below 88.0%" in judged.message
    status = judged.status()
    assert status["verdict"] == "Fail" and status["samplesNeeded"] == 10_000


def test_decide_uses_the_stable_only_when_the_limit_depends_on_it() -> None:
    one_sample = decide(30, 1000, 0, 0, 0.0, 0.02, 0.01, 0.05, 0.05)
    assert one_sample.limit == 0.02
    assert one_sample.verdict is INC


# Latency: the share of requests slower than the bucket bound nearest the quantile.


def histogram(shares_at_or_under: tuple[float, ...], n: float) -> Histogram:
    return Histogram(BOUNDS, tuple(round(s * n) for s in (*shares_at_or_under, 1.0)))


STABLE_LATENCY = (0.50, 0.80, 0.95, 0.99)  # p95 at 0.25 s
P95 = LatencySLO("p95", 0.95, Tolerance(relative=0.1))


def sample(rng: random.Random, shares: tuple[float, ...], n: int) -> list[int]:
    """Observations per bucket (non-cumulative) for ``n`` requests."""
    edges = [*shares, 1.0]
    counts = [0] * len(edges)
    for _ in range(n):
        u = rng.random()
        counts[next(i for i, e in enumerate(edges) if u <= e)] += 1
    return counts


def latency_decision(
    rng: random.Random, candidate: tuple[float, ...], per_look: int, looks: int
) -> Verdict:
    bins_c = [0] * len(BOUNDS)
    bins_s = [0] * len(BOUNDS)
    for _ in range(looks):
        bins_c = [a + b for a, b in zip(bins_c, sample(rng, candidate, per_look), strict=True)]
        bins_s = [
            a + b for a, b in zip(bins_s, sample(rng, STABLE_LATENCY, 3 * per_look), strict=True)
        ]
        cum_c = tuple(float(sum(bins_c[: i + 1])) for i in range(len(BOUNDS)))
        cum_s = tuple(float(sum(bins_s[: i + 1])) for i in range(len(BOUNDS)))
        verdict = JUDGE.latency(P95, Histogram(BOUNDS, cum_c), Histogram(BOUNDS, cum_s), BUDGET)
        if verdict.verdict is not INC:
            return verdict.verdict
    return INC


def test_latency_identical_versions_are_not_failed() -> None:
    rng = random.Random(6)
    outcomes = [latency_decision(rng, STABLE_LATENCY, 100, 20) for _ in range(60)]
    fail, _ = rates(outcomes)
    assert fail == 0


def test_latency_a_slower_tail_is_failed() -> None:
    rng = random.Random(7)
    slower = (0.45, 0.72, 0.88, 0.97)  # 12 % slower than 0.25 s instead of 5 %
    outcomes = [latency_decision(rng, slower, 100, 20) for _ in range(60)]
    fail, passed = rates(outcomes)
    assert fail >= 0.95 and passed == 0


def test_latency_tests_the_bound_nearest_the_quantile() -> None:
    stable = histogram(STABLE_LATENCY, 10_000)
    assert tail_bucket(stable, 0.95) == 2  # 0.25 s: 5 % slower
    assert tail_bucket(stable, 0.99) == 3  # 0.5 s: 1 % slower
    judged = JUDGE.latency(P95, stable, stable, BUDGET)
    assert judged.deciding is not None
    assert judged.deciding.metric == "share slower than 0.25s"


@pytest.mark.parametrize(
    ("candidate", "why"),
    [
        (Histogram(BOUNDS, (0, 0, 0, 0, 0)), "no candidate requests"),
        (Histogram(BOUNDS[:-1], (1, 2, 3, 4)), "no +Inf bucket"),
        (Histogram(BOUNDS, (5, 4, 3, 2, 1)), "decrease"),
        (Histogram(BOUNDS, (1, 2, 3)), "bucket bounds but"),
        (Histogram((0.5, 0.1, math.inf), (1, 2, 3)), "not strictly increasing"),
    ],
)
def test_unreadable_histograms_are_inconclusive(candidate: Histogram, why: str) -> None:
    judged = JUDGE.latency(P95, candidate, histogram(STABLE_LATENCY, 1000), BUDGET)
    assert judged.verdict is INC
    assert why in judged.message


def test_latency_without_a_stable_or_with_no_stable_tail() -> None:
    candidate = histogram(STABLE_LATENCY, 1000)
    assert JUDGE.latency(P95, candidate, None, BUDGET).verdict is INC
    all_fast = Histogram(BOUNDS, (500, 500, 500, 500, 500))  # nothing slower than 0.05 s
    judged = JUDGE.latency(P95, candidate, all_fast, BUDGET)
    # The stable is below the buckets' resolution: the candidate is held to the first
    # bucket, and this one (a tail well beyond 0.05 s) is proven slower than that.
    assert judged.verdict is F, judged.message
    assert "the buckets resolve no finer" in judged.message


def test_latency_requests_only_in_the_inf_bucket_count_as_slow() -> None:
    all_slow = Histogram(BOUNDS, (0, 0, 0, 0, 500))  # every request beyond the last bound
    judged = JUDGE.latency(P95, all_slow, histogram(STABLE_LATENCY, 1500), BUDGET)
    assert judged.verdict is F
    assert judged.deciding is not None and judged.deciding.candidate == 1.0


def test_latency_ceiling_fails_and_passes_on_the_right_side_of_the_bound() -> None:
    ceiling = LatencySLO("p95", 0.95, max_seconds=0.3)  # between the 0.25 and 0.5 bounds
    slow = histogram((0.3, 0.5, 0.7, 0.9), 20_000)  # 30 % slower than 0.25 s, 10 % than 0.5 s
    fast = histogram((0.7, 0.95, 0.99, 0.999), 20_000)  # 1 % slower than 0.25 s
    assert JUDGE.latency(ceiling, slow, None, BUDGET).verdict is F
    assert JUDGE.latency(ceiling, fast, None, BUDGET).verdict is P
    # 7 % above 0.25 s but 1 % above 0.5 s: the 0.3 s ceiling can be neither proven nor broken.
    between = histogram((0.5, 0.8, 0.93, 0.99), 20_000)
    assert JUDGE.latency(ceiling, between, None, BUDGET).verdict is INC


def test_different_bucket_layouts_compare_on_the_bounds_they_share() -> None:
    finer = Histogram((0.05, 0.1, 0.2, 0.25, 0.5, math.inf), (5000, 8000, 9000, 9500, 9900, 10_000))
    judged = JUDGE.latency(P95, finer, histogram(STABLE_LATENCY, 30_000), BUDGET)
    assert judged.verdict is P


def test_a_stable_faster_than_the_first_bucket_still_lets_a_fast_candidate_pass() -> None:
    # Every stable request below 5 ms: its p95 is below what the buckets resolve. The
    # candidate is held to that floor instead of waiting forever for a stable tail.
    from slipway.analysis.judges import ErrorBudget, Histogram, LatencySLO, Tolerance, make_judge

    bounds = (0.005, 0.01, 0.025, 0.1, float("inf"))
    stable = Histogram(bounds, (2000.0,) * 5)
    slo = LatencySLO("p95", 0.95, Tolerance(relative=0.5), 0.25, 0.25)
    budget = ErrorBudget().per_slo(3)
    judge = make_judge("sequential")
    fast = judge.latency(slo, Histogram(bounds, (700.0,) * 5), stable, budget)
    assert fast.verdict is Verdict.PASS, fast.message
    slow = judge.latency(
        slo, Histogram(bounds, (100.0, 400.0, 700.0, 700.0, 700.0)), stable, budget
    )
    assert slow.verdict is Verdict.FAIL, slow.message
    assert "the buckets resolve no finer" in slow.message


@pytest.mark.parametrize(
    ("stable_counts", "why"),
    [
        # Every stable request between 10 and 25 ms: the bound nearest its p95 is below its
        # median and says nothing (a 240 ms candidate was promoted before this was handled).
        ((0, 0, 3000, 3000, 3000, 3000, 3000), "concentrated inside one bucket"),
        # p95 just under the first bound, a thin tail above it: the tolerance (x1.5) falls
        # below the first bound, where the old check rested on extrapolation and dithered.
        ((2980, 2990, 2995, 3000, 3000, 3000, 3000), "tolerance below the first bound"),
    ],
)
def test_latency_at_the_buckets_resolution_fails_a_slow_candidate_and_passes_an_equal_one(
    stable_counts: tuple[int, ...], why: str
) -> None:
    from slipway.analysis.judges import ErrorBudget, Histogram, LatencySLO, Tolerance, make_judge

    bounds = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, float("inf"))
    stable = Histogram(bounds, tuple(float(x) for x in stable_counts))
    slo = LatencySLO("p95", 0.95, Tolerance(relative=0.5), None, 0.25)
    budget = ErrorBudget().per_slo(3)
    judge = make_judge("sequential")
    equal = Histogram(bounds, tuple(x / 3.0 for x in stable.cumulative))
    same = judge.latency(slo, equal, stable, budget)
    assert same.verdict is Verdict.PASS, (why, same.message)
    slow = Histogram(bounds, (0.0, 0.0, 0.0, 0.0, 0.0, 300.0, 300.0))  # every request ~240 ms
    regressed = judge.latency(slo, slow, stable, budget)
    assert regressed.verdict is Verdict.FAIL, (why, regressed.message)
