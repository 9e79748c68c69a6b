"""`make bench-decisions`: how often each judge gets a rollout right, printed (not asserted).

A judge is only as good as its decisions, and decisions can only be scored
where the truth is known. So this replays synthetic canaries with known
effects through the very judge code the operator runs
(``slipway.analysis.judges``), hundreds of seeded rollouts per cell, and
counts: identical versions rolled back (false rollbacks), regressions rolled
back (detection), the median time to a decision, and rollouts still
undecided at the progress deadline (inconclusive holds).

The world simulated (stated, so the figures can be argued with):

- requests arrive as a Poisson stream at 5, 20 or 100 req/s; the candidate's
  share is its step's weight (25 %, 50 %, 75 %; four replicas split exactly);
- the stable: 1 % errors, 90 % accuracy (every request labelled), latency
  lognormal with p50 50 ms, p95 134 ms, p99 202 ms, observed into the example
  model server's histogram buckets; outcomes are independent per request;
- the candidate: the same, or one regression: error rate x2 (1 % -> 2 %),
  accuracy -3 or -6 points, latency x1.2 on every request, or only the
  slowest 2 % of requests +20 % (p99 +20 %, p95 unchanged);
- SLOs as the fraud example has them, with tolerances a team could live with:
  error rate <= stable x 1.5, accuracy >= stable - 2 points, p95 <= stable x 1.1;
  the p99-only change is run twice: against those SLOs (it does not touch the
  p95, so promoting it is right) and with p99 <= stable x 1.1 instead;
- the canary: analysis every 5 s; a step advances once its pause is over and
  the latest analysis passed; a step that has not advanced by the progress
  deadline is counted as undecided (the tier's onInconclusive then holds it
  or rolls it back for want of evidence).

Judges side by side, on the very same request streams:

- ``threshold (today)``: what the operator does now (``verdicts.judge`` and
  ``rollout/canary.py``): each tick judges 30 s windows of point estimates,
  minSamples 20, failures counted over the whole release, failureLimit 1,
  inconclusiveLimit 6 then hold;
- ``threshold (fixed)``: the same with a minimum sample count derived from
  each limit and failures counted once per window;
- ``sequential``: counts since the candidate started, anytime-valid tests,
  a Fail rolls back at once; false-rollback budget 5 % per release.

"Needed" is what the sequential judge says it needs to decide a cell if its
estimates were exact (its own ``samples_needed`` on the true rates, at the
first step's split); "had" is the candidate requests a step gets by its
deadline. Detection targets apply where had >= needed.
"""

from __future__ import annotations

import argparse
import itertools
import math
import multiprocessing
import os
import statistics
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from slipway.analysis.judges import (
    Counts,
    CountSLO,
    ErrorBudget,
    Histogram,
    Judgement,
    LatencySLO,
    SequentialJudge,
    SLOBudget,
    ThresholdJudge,
    Tolerance,
)
from slipway.analysis.judges.threshold import independent_failures
from slipway.api.phases import Verdict

TICK = 5  # seconds between analyses
WINDOW_TICKS = 6  # the threshold judge's 30 s window
STEPS = (25, 50, 75)
RATES = (5, 20, 100)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, math.inf)
LATENCY_MEDIAN, LATENCY_SIGMA = 0.05, 0.6  # p50 50 ms, p95 134 ms, p99 202 ms
STABLE_ERRORS, STABLE_ACCURACY = 0.01, 0.90
LEGACY_MIN_SAMPLES, FAILURE_LIMIT, INCONCLUSIVE_LIMIT = 20, 1, 6

Latency = Literal["same", "x1.2", "p99"]
Outcome = Literal["promoted", "rolled back", "undecided"]
Style = Literal["today", "fixed", "sequential"]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Scenario:
    """One candidate version: its truth, and whether rolling it back is right."""

    name: str
    errors: float = STABLE_ERRORS
    accuracy: float = STABLE_ACCURACY
    latency: Latency = "same"
    quantile: float = 0.95
    regression: bool = True
    target: bool = False  # detection target applies (issue 7)


SCENARIOS = (
    Scenario("identical", regression=False),
    Scenario("error rate x2", errors=0.02, target=True),
    Scenario("accuracy -3 pts", accuracy=0.87),
    Scenario("accuracy -6 pts", accuracy=0.84, target=True),
    Scenario("latency x1.2", latency="x1.2", target=True),
    Scenario("p99-only +20%, p95 SLO", latency="p99", regression=False),
    Scenario("p99-only +20%, p99 SLO", latency="p99", quantile=0.99),
)


def slos(scenario: Scenario) -> tuple[CountSLO, CountSLO, LatencySLO]:
    """The SLOs every rollout is judged on."""
    quantile = scenario.quantile
    return (
        CountSLO("error-rate", "lower", Tolerance(relative=0.5), metric="error rate"),
        CountSLO("accuracy", "higher", Tolerance(absolute=0.02), metric="accuracy"),
        LatencySLO(f"latency-p{quantile * 100:g}", quantile, Tolerance(relative=0.1)),
    )


def _stable_cdf(seconds: float) -> float:
    if seconds <= 0:
        return 0.0
    if math.isinf(seconds):
        return 1.0
    z = math.log(seconds / LATENCY_MEDIAN) / LATENCY_SIGMA
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def latency_cdf(kind: Latency, seconds: float) -> float:
    """P(latency <= seconds) for a version."""
    if kind == "x1.2":
        return _stable_cdf(seconds / 1.2)
    if kind == "p99":  # requests beyond the stable's p98 take 20 % longer
        return min(_stable_cdf(seconds), 0.98) + max(0.0, _stable_cdf(seconds / 1.2) - 0.98)
    return _stable_cdf(seconds)


def bucket_shares(kind: Latency) -> list[float]:
    """Probability of each histogram bucket (non-cumulative)."""
    cdf = [latency_cdf(kind, b) for b in BUCKETS]
    return [cdf[0], *(b - a for a, b in itertools.pairwise(cdf))]


@dataclass(frozen=True)
class Streams:
    """One rollout's requests per (step, tick), both versions; lists for speed."""

    requests: list[list[list[int]]]  # [version][step][tick]
    errors: list[list[list[int]]]
    correct: list[list[list[int]]]
    buckets: list[list[list[list[int]]]]  # [version][step][tick][bucket]


def draw(rng: np.random.Generator, scenario: Scenario, rate: float, ticks: int) -> Streams:
    """Every tick's counts for every step: the path picks which step's counts it sees."""
    shares = np.array(STEPS, dtype=float)[:, None] / 100.0
    requests, errors, correct, buckets = [], [], [], []
    same: Latency = "same"
    versions = (
        (shares, scenario.errors, scenario.accuracy, scenario.latency),
        (1.0 - shares, STABLE_ERRORS, STABLE_ACCURACY, same),
    )
    for share, error_rate, accuracy, latency in versions:
        n: IntArray = rng.poisson(rate * TICK * share, size=(len(STEPS), ticks))
        requests.append(n.tolist())
        errors.append(rng.binomial(n, error_rate).tolist())
        correct.append(rng.binomial(n, accuracy).tolist())
        buckets.append(rng.multinomial(n, bucket_shares(latency)).tolist())
    return Streams(requests, errors, correct, buckets)


@dataclass
class Tally:
    """One version's counts since the candidate started, and every tick's snapshot."""

    snapshots: list[tuple[int, int, int, tuple[int, ...]]] = field(
        default_factory=lambda: [(0, 0, 0, (0,) * len(BUCKETS))]
    )

    def add(self, requests: int, errors: int, correct: int, buckets: Sequence[int]) -> None:
        n, e, c, h = self.snapshots[-1]
        self.snapshots.append(
            (
                n + requests,
                e + errors,
                c + correct,
                tuple(a + b for a, b in zip(h, buckets, strict=True)),
            )
        )

    def since(self, ticks_back: int | None) -> tuple[int, int, int, tuple[int, ...]]:
        """Counts over the last ``ticks_back`` ticks (None: since the start)."""
        last = self.snapshots[-1]
        if ticks_back is None or ticks_back >= len(self.snapshots) - 1:
            return last
        first = self.snapshots[-1 - ticks_back]
        return (
            last[0] - first[0],
            last[1] - first[1],
            last[2] - first[2],
            tuple(a - b for a, b in zip(last[3], first[3], strict=True)),
        )


def _histogram(bins: tuple[int, ...]) -> Histogram:
    running, cumulative = 0, []
    for count in bins:
        running += count
        cumulative.append(float(running))
    return Histogram(BUCKETS, tuple(cumulative))


Judging = Callable[[Tally, Tally], list[Judgement]]


def judging(
    judge: SequentialJudge | ThresholdJudge,
    scenario: Scenario,
    budget: SLOBudget,
    window: int | None,
) -> Judging:
    """A function judging every SLO of a tick from the two tallies."""
    errors, accuracy, latency = slos(scenario)

    def judge_tick(candidate: Tally, stable: Tally) -> list[Judgement]:
        nc, ec, cc, hc = candidate.since(window)
        ns, es, cs, hs = stable.since(window)
        return [
            judge.counts(errors, Counts(ec, nc), Counts(es, ns), budget),
            judge.counts(accuracy, Counts(cc, nc), Counts(cs, ns), budget),
            judge.latency(latency, _histogram(hc), _histogram(hs), budget),
        ]

    return judge_tick


@dataclass(frozen=True)
class Result:
    """How one rollout ended, and when."""

    outcome: Outcome
    seconds: int


@dataclass(frozen=True)
class Schedule:
    """The canary: pause per step and the progress deadline per step."""

    pause_ticks: int
    deadline_ticks: int

    @property
    def ticks(self) -> int:
        return self.deadline_ticks * len(STEPS)


def roll_out(streams: Streams, judge_tick: Judging, schedule: Schedule, style: Style) -> Result:
    """One canary, tick by tick, as the operator would run it with this judge.

    ``style``: ``sequential`` (a Fail rolls back at once), ``today``
    (failures counted over the release, inconclusiveLimit then hold), or
    ``fixed`` (failures counted once per window).
    """
    candidate, stable = Tally(), Tally()
    step, step_start = 0, 0
    failures: list[int] = []
    inconclusives = 0
    for tick in range(1, schedule.ticks + 1):
        i = tick - 1
        for tally, v in ((candidate, 0), (stable, 1)):
            tally.add(
                streams.requests[v][step][i],
                streams.errors[v][step][i],
                streams.correct[v][step][i],
                streams.buckets[v][step][i],
            )
        verdict = combine_all(judge_tick(candidate, stable))
        now = tick * TICK
        held = False
        if style == "sequential":
            if verdict is Verdict.FAIL:
                return Result("rolled back", now)
        else:
            if verdict is Verdict.FAIL:
                failures.append(tick)
                inconclusives = 0
            elif verdict is Verdict.INCONCLUSIVE:
                inconclusives += 1
            else:
                inconclusives = 0
            counted = (
                len(failures) if style == "today" else independent_failures(failures, WINDOW_TICKS)
            )
            if counted > FAILURE_LIMIT:
                return Result("rolled back", now)
            held = inconclusives > INCONCLUSIVE_LIMIT
        waited = tick - step_start
        if not held and waited >= schedule.pause_ticks and verdict is Verdict.PASS:
            step, step_start = step + 1, tick
            if step == len(STEPS):
                return Result("promoted", now)
        elif waited >= schedule.deadline_ticks:
            return Result("undecided", now)  # held, or rolled back for want of evidence
    return Result("undecided", schedule.ticks * TICK)


def combine_all(judgements: list[Judgement]) -> Verdict:
    """A tick's verdict, as ``verdicts.combine``: any Fail; else any Inconclusive; else Pass."""
    verdicts = {j.verdict for j in judgements}
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    return Verdict.PASS if verdicts == {Verdict.PASS} else Verdict.INCONCLUSIVE


JUDGES = ("threshold (today)", "threshold (fixed)", "sequential")


def contestants(scenario: Scenario) -> dict[str, tuple[Judging, Style]]:
    """Each judge as the operator would configure it, with its rollout style."""
    budget = ErrorBudget().per_slo(len(slos(scenario)))
    return {
        "threshold (today)": (
            judging(
                ThresholdJudge(min_events=0, min_samples=LEGACY_MIN_SAMPLES),
                scenario,
                budget,
                WINDOW_TICKS,
            ),
            "today",
        ),
        "threshold (fixed)": (
            judging(ThresholdJudge(min_samples=LEGACY_MIN_SAMPLES), scenario, budget, WINDOW_TICKS),
            "fixed",
        ),
        "sequential": (judging(SequentialJudge(), scenario, budget, None), "sequential"),
    }


def needed(scenario: Scenario) -> float:
    """Candidate samples the sequential judge says it needs, fed the true rates.

    At the first step's split. Identical versions: every SLO must pass. A
    regression: the first SLO whose estimate is beyond its limit to fail.
    """
    share = STEPS[0] / 100.0
    n_c = 200.0  # few enough that nothing is decided yet
    n_s = n_c * (1.0 - share) / share
    errors, accuracy, latency = slos(scenario)
    budget = ErrorBudget().per_slo(3)
    judge = SequentialJudge()

    def expected(kind: Latency, n: float) -> Histogram:
        return Histogram(BUCKETS, tuple(n * latency_cdf(kind, b) for b in BUCKETS))

    judged = (
        (
            judge.counts(
                errors, Counts(scenario.errors * n_c, n_c), Counts(STABLE_ERRORS * n_s, n_s), budget
            ),
            1.0,
        ),
        (
            judge.counts(
                accuracy,
                Counts(scenario.accuracy * n_c, n_c),
                Counts(STABLE_ACCURACY * n_s, n_s),
                budget,
            ),
            -1.0,
        ),
        (
            judge.latency(latency, expected(scenario.latency, n_c), expected("same", n_s), budget),
            1.0,
        ),
    )
    needs: list[float] = []
    for judgement, worse in judged:
        check = judgement.deciding
        if check is None or check.candidate is None or check.limit is None:
            return math.inf
        need = math.inf if check.samples_needed is None else check.samples_needed
        beyond = (check.candidate - check.limit) * worse > 0
        if not scenario.regression or beyond:
            needs.append(need)
    if not needs:
        return math.inf
    return max(needs) if not scenario.regression else min(needs)


@dataclass(frozen=True)
class Cell:
    scenario: int
    rate: int
    trials: int
    seed: int
    schedule: Schedule


def run_cell(cell: Cell) -> dict[str, list[Result]]:
    """Every judge on the same seeded rollouts of one (scenario, traffic) cell."""
    scenario = SCENARIOS[cell.scenario]
    rng = np.random.default_rng([cell.seed, cell.scenario, cell.rate])
    players = contestants(scenario)
    results: dict[str, list[Result]] = {name: [] for name in players}
    for _ in range(cell.trials):
        streams = draw(rng, scenario, cell.rate, cell.schedule.ticks)
        for name, (judge_tick, style) in players.items():
            results[name].append(roll_out(streams, judge_tick, cell.schedule, style))
    return results


def share(results: list[Result], outcome: Outcome) -> float:
    return sum(r.outcome == outcome for r in results) / len(results)


def median_minutes(results: list[Result]) -> str:
    decided = [r.seconds for r in results if r.outcome != "undecided"]
    return f"{statistics.median(decided) / 60:.1f}" if decided else "-"


def had(rate: int, schedule: Schedule) -> float:
    """Candidate requests the first step gets by its deadline."""
    return rate * STEPS[0] / 100 * schedule.deadline_ticks * TICK


def report(
    table: dict[tuple[int, int], dict[str, list[Result]]], schedule: Schedule, trials: int
) -> list[str]:
    """One row per scenario and judge; per traffic level: rolled back, held, median minutes."""
    name_width, judge_width, cell = 26, 18, 22
    lines = [
        f"{'':{name_width + judge_width}}" + "".join(f"{f'{r} req/s':>{cell}}" for r in RATES),
        f"{'candidate':{name_width}}{'judge':{judge_width}}"
        + f"{'rollback  held   min':>{cell}}" * len(RATES),
    ]
    for s, scenario in enumerate(SCENARIOS):
        lines.append("")
        for j, judge in enumerate(JUDGES):
            label = scenario.name if j == 0 else ""
            cells = []
            for r in RATES:
                results = table[(s, r)][judge]
                cells.append(
                    f"{share(results, 'rolled back'):7.1%} {share(results, 'undecided'):6.1%}"
                    f" {median_minutes(results):>5}"
                )
            lines.append(
                f"{label:{name_width}}{judge:{judge_width}}"
                + "".join(f"{c:>{cell}}" for c in cells)
            )
        need = needed(scenario)
        shown = "never" if math.isinf(need) else f"{need:,.0f}"
        truth = "(a regression)" if scenario.regression else "(within tolerance)"
        lines.append(
            f"{'  ' + truth:{name_width}}{'samples needed':{judge_width}}"
            + "".join(f"{f'{shown} / {had(r, schedule):,.0f} had':>{cell}}" for r in RATES)
        )
    budget = ErrorBudget()
    notes = [
        "rollback: share rolled back on a failed analysis (a FALSE rollback where the"
        " candidate is within tolerance); held: undecided at the progress deadline, which"
        " the tier's onInconclusive then holds or rolls back; min: median minutes to"
        " promotion or rollback on a failed analysis. samples needed: what the sequential"
        " judge says it needs on the true rates; had: candidate requests in a step by its"
        " deadline.",
        f"{trials} rollouts per cell; steps {'/'.join(map(str, STEPS))} %, pause"
        f" {schedule.pause_ticks * TICK}s, progress deadline"
        f" {schedule.deadline_ticks * TICK // 60} min per step, analysis every {TICK}s;"
        f" sequential budget: false rollback"
        f" {budget.false_rollback:.0%} per release over 3 SLOs, false promotion"
        f" {budget.false_promotion:.0%} per SLO.",
    ]
    return [*lines, "", *(wrapped for note in notes for wrapped in textwrap.wrap(note, 100))]


def verdict_targets(
    table: dict[tuple[int, int], dict[str, list[Result]]], schedule: Schedule
) -> list[str]:
    """The issue's targets for the sequential judge, checked against the figures.

    A detection target applies only where a step can gather the samples the
    judge says it needs ("n/a" otherwise: it holds and says so instead).
    """
    lines = [
        "",
        "targets (sequential)" + " " * 22 + "".join(f"{f'{r} req/s':>14}" for r in RATES),
    ]
    for s, scenario in enumerate(SCENARIOS):
        if scenario.regression and not scenario.target:
            continue
        if not scenario.regression and s != 0:
            continue
        marks = []
        for r in RATES:
            rolled = share(table[(s, r)]["sequential"], "rolled back")
            if not scenario.regression:
                mark = "ok" if rolled <= 0.01 else "MISSED"
            elif had(r, schedule) >= needed(scenario):
                mark = "ok" if rolled >= 0.95 else "MISSED"
            else:
                mark = "n/a"
            marks.append(f"{rolled:7.1%} {mark:>6}")
        what = "false rollback <= 1 %" if not scenario.regression else "detected >= 95 %"
        lines.append(f"  {scenario.name + ', ' + what:40}" + "".join(f"{m:>14}" for m in marks))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=500, help="rollouts per cell (500)")
    parser.add_argument("--quick", action="store_true", help="100 rollouts per cell")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pause", type=int, default=60, help="seconds per step (60)")
    parser.add_argument("--deadline", type=int, default=20, help="minutes per step (20)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    trials = 100 if args.quick else args.trials
    schedule = Schedule(
        pause_ticks=max(1, args.pause // TICK),
        deadline_ticks=max(1, args.deadline * 60 // TICK),
    )
    cells = [Cell(s, r, trials, args.seed, schedule) for s in range(len(SCENARIOS)) for r in RATES]
    started = time.monotonic()
    print(
        f"[bench-decisions] {len(cells)} cells x {trials} rollouts x {len(JUDGES)} judges"
        f" on {args.workers} workers",
        flush=True,
    )
    with multiprocessing.Pool(args.workers) as pool:
        # Slow cells (low traffic: every rollout runs to its deadline) first.
        order = sorted(cells, key=lambda c: c.rate)
        answers = pool.map(run_cell, order, chunksize=1)
    table = {(c.scenario, c.rate): a for c, a in zip(order, answers, strict=True)}
    for line in report(table, schedule, trials) + verdict_targets(table, schedule):
        print(line)
    print(f"\n[bench-decisions] done in {time.monotonic() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
