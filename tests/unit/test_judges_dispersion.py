"""Errors in bursts (issue 13 section 4): over-dispersion measured from per-pod counts.

Seeded canaries of e2e/bench_bursts.py (its docstring states the world): identical versions
whose pods' error rates vary over time must stay within the error-rate SLO's false-rollback
budget, where the judge without per-pod counts (today's) rolls them back far more often; and
independent errors must be detected as often as before.
"""

from __future__ import annotations

import random

import pytest
from e2e.bench_bursts import BUDGET, ERRORS, World, tally

from slipway.analysis.judges import Counts, SequentialJudge, Source
from slipway.analysis.judges.dispersion import chi2_quantile, dispersion
from slipway.analysis.judges.sequential import recent_split
from slipway.api.phases import Verdict

F, P, INC = Verdict.FAIL, Verdict.PASS, Verdict.INCONCLUSIVE
SLO_BUDGET = BUDGET.fail_alpha  # the error-rate SLO's share of the release's 5 %


def fail_rate(world: World, rollouts: int, seed: int, with_sources: bool) -> float:
    outcomes = tally(world, rollouts, seed, with_sources)
    return sum(r.verdict is F for r in outcomes) / rollouts


@pytest.mark.parametrize(
    ("rate", "cv", "burst"),
    [(100.0, 3.0, 30.0), (500.0, 3.0, 30.0), (500.0, 2.0, 10.0)],
    ids=["100rps-cv3-30s", "500rps-cv3-30s", "500rps-cv2-10s"],
)
def test_identical_versions_with_bursty_pods_stay_within_the_budget(
    rate: float, cv: float, burst: float
) -> None:
    """The three minutes after the start, when the candidate runs on one pod of four."""
    world = World(rate, cv=cv, burst=burst, history=300.0, deadline=180.0)
    assert fail_rate(world, 100, 7, with_sources=True) <= SLO_BUDGET
    # The same request streams judged as independent requests (today's judge): over budget.
    assert fail_rate(world, 100, 7, with_sources=False) > 2 * SLO_BUDGET


def test_independent_errors_are_detected_as_often_as_before() -> None:
    world = World(20.0, candidate_errors=0.04, history=300.0, deadline=300.0)
    before = tally(world, 80, 3, with_sources=False)
    after = tally(world, 80, 3, with_sources=True)
    detected_before = sum(r.verdict is F for r in before) / len(before)
    detected_after = sum(r.verdict is F for r in after) / len(after)
    assert detected_before > 0.2  # a cell where detection is not a foregone conclusion
    assert detected_after >= detected_before - 0.03
    slower = sum(a.seconds > b.seconds for a, b in zip(after, before, strict=True))
    assert slower <= 0.05 * len(after)


def test_identical_independent_versions_still_pass_as_fast() -> None:
    world = World(100.0, history=300.0, deadline=300.0)
    before = tally(world, 60, 5, with_sources=False)
    after = tally(world, 60, 5, with_sources=True)
    assert [r.verdict for r in after] == [r.verdict for r in before]
    assert sum(a.seconds for a in after) <= 1.05 * sum(b.seconds for b in before)


# --- the dispersion estimate itself ---------------------------------------------------------


def pods(
    rng: random.Random, rates: list[list[float]], per_step: int, prefix: str
) -> tuple[Source, ...]:
    """Sources whose step ``j`` of pod ``i`` has ``per_step`` requests erring at ``rates[i][j]``."""
    out = []
    for i, row in enumerate(rates):
        events = tuple(float(sum(rng.random() < p for _ in range(per_step))) for p in row)
        out.append(Source(f"{prefix}{i}", events, tuple(float(per_step) for _ in row)))
    return tuple(out)


def counts(sources: tuple[Source, ...]) -> Counts:
    return Counts(
        sum(map(sum, (s.events for s in sources))),
        sum(map(sum, (s.totals for s in sources))),
        sources,
    )


def test_independent_errors_are_not_widened() -> None:
    rng = random.Random(11)
    widened = 0
    for _ in range(40):
        candidate = counts(pods(rng, [[0.01] * 60], 200, "c"))
        stable = counts(pods(rng, [[0.01] * 60] * 3, 200, "s"))
        spread = dispersion(candidate, stable)
        assert spread.measured
        widened += spread.candidate > 1.0 or spread.stable > 1.0
    assert widened <= 2


def test_a_real_difference_between_versions_is_not_taken_for_bursts() -> None:
    rng = random.Random(12)
    candidate = counts(pods(rng, [[0.03] * 60], 200, "c"))
    stable = counts(pods(rng, [[0.01] * 60] * 3, 200, "s"))
    spread = dispersion(candidate, stable)
    assert (spread.candidate, spread.stable) == (1.0, 1.0)


def test_bursts_on_pods_widen_both_versions_by_their_requests_per_pod() -> None:
    """Pods alternate between 0 % and 4 % errors for 6 steps at a time (mean 2 %)."""
    rng = random.Random(13)

    def bursty(phase: int) -> list[float]:
        return [0.04 if ((j + phase) // 6) % 2 else 0.0 for j in range(96)]

    candidate = counts(pods(rng, [bursty(0)], 300, "c"))
    stable = counts(pods(rng, [bursty(2), bursty(4), bursty(7)], 100, "s"))
    spread = dispersion(candidate, stable)
    # One pod with 300 requests per step in 6-step bursts: far more than binomial spread.
    assert spread.candidate > 10
    assert spread.stable > 1.5
    assert spread.steps is not None and spread.steps >= 4
    assert "bursts: variance" in spread.describe()


def test_history_before_the_candidate_measures_bursts_while_it_has_one_pod() -> None:
    """The stable's pods over 10 minutes before the start show the bursts; the candidate's
    single pod over one minute cannot show them itself."""
    rng = random.Random(14)
    before, after = 120, 12

    def bursty(phase: int) -> list[float]:
        return [0.09 if ((j + phase) // 6) % 3 == 0 else 0.0 for j in range(before + after)]

    history = pods(rng, [bursty(1), bursty(3), bursty(5)], 150, "s")
    since = counts(tuple(Source(s.name, s.events[before:], s.totals[before:]) for s in history))
    stable = Counts(since.events, since.total, history)
    (served,) = pods(rng, [[0.09] * after], 150, "c")
    candidate = counts(
        (Source("c0", (0.0,) * before + served.events, (0.0,) * before + served.totals),)
    )
    with_history = dispersion(candidate, stable)
    assert with_history.candidate > 5
    judged = SequentialJudge().counts(ERRORS, candidate, stable, BUDGET)
    without = SequentialJudge().counts(
        ERRORS,
        Counts(candidate.events, candidate.total),
        Counts(stable.events, stable.total),
        BUDGET,
    )
    assert without.verdict is F  # 9 % on one pod vs the stable's ~3 %: "proven" worse
    assert judged.verdict is not F


def test_no_sources_means_independent_requests() -> None:
    spread = dispersion(Counts(10, 1000), Counts(30, 3000))
    assert (spread.candidate, spread.stable, spread.measured) == (1.0, 1.0, False)
    assert spread.describe() == ""


@pytest.mark.parametrize(
    ("source", "why"),
    [
        (Source("p", (1.0, 2.0), (10.0,)), "2 event steps, 1 totals"),
        (Source("p", (-1.0,), (10.0,)), "finite and >= 0"),
        (Source("p", (11.0,), (10.0,)), "11 events out of only 10"),
    ],
)
def test_bad_sources_are_inconclusive_with_the_reason(source: Source, why: str) -> None:
    judged = SequentialJudge().counts(ERRORS, Counts(1, 10, (source,)), Counts(1, 10), BUDGET)
    assert judged.verdict is INC and why in judged.message


def test_sources_of_different_lengths_are_refused() -> None:
    a, b = Source("a", (0.0,), (1.0,)), Source("b", (0.0, 0.0), (1.0, 1.0))
    assert "different numbers of steps" in (Counts(0, 2, (a, b)).problem or "")


def test_chi2_quantile_is_close_to_the_tables() -> None:
    # chi-square 10 % quantiles: df 2: 0.211, df 10: 4.865, df 100: 82.36
    for df, table in ((2, 0.211), (10, 4.865), (100, 82.36)):
        assert chi2_quantile(df, -1.2816) == pytest.approx(table, rel=0.08)


def test_recent_split_reads_the_last_steps_since_the_candidate_served() -> None:
    candidate = Counts(0, 30, (Source("c", (0.0,) * 10, (0.0,) * 4 + (5.0,) * 6),))
    stable = Counts(0, 400, (Source("s", (0.0,) * 10, (40.0,) * 4 + (40.0,) * 6),))
    assert recent_split(candidate, stable) == pytest.approx(8.0)
    assert recent_split(Counts(0, 30), stable) is None
