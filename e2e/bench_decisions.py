"""`make bench-decisions`: how often each judge gets a rollout right, printed (not asserted).

A judge is only as good as its decisions, and decisions can only be scored
where the truth is known. So this replays synthetic canaries with known
effects through the very code the operator runs (``analysis.verdicts`` for
today's behaviour, ``analysis.judges`` for the threshold and sequential
judges), hundreds of seeded rollouts per cell, and counts: versions within
tolerance rolled back (false rollbacks), regressions rolled back
(detection), the median time to a decision, and rollouts still undecided at
the progress deadline (inconclusive holds).

The world simulated (stated, so the figures can be argued with):

- requests arrive as a Poisson stream at 5, 20 or 100 req/s; the candidate's
  share is its step's weight (25 %, 50 %, 75 %; four replicas split exactly,
  the split moves at once when a step advances; ``--ready 5`` makes a new
  step's pods take one tick to be ready, its pause starting then);
- the stable: 1 % errors, 90 % accuracy (every request labelled), latency
  lognormal with p50 50 ms, p95 134 ms, p99 202 ms, observed into the example
  model server's histogram buckets; outcomes are independent per request;
- the candidate: the same, or one change: error rate x2 (1 % -> 2 %),
  accuracy -3 or -6 points, latency x1.2 on every request, or only the
  slowest 2 % of requests +20 % (p99 +20 %, p95 unchanged);
- the canary of ``examples/manifests/fraud-model.yaml`` as shipped: steps
  25/50/75 % with 10 s pauses, analysis every 5 s, a step advances once its
  pause is over and the latest analysis in it passed. A step not advanced 20
  minutes after its pause is counted as held (the operator's progress deadline
  then lets the tier's onInconclusive hold it or roll it back); today's
  code has no such deadline, the figure is the same "still undecided".

The SLOs are the example's (all judges):

- error rate ``max 0.02``;
- p95 latency ``max 0.25`` s and ``maxIncrease 0.05`` with
  ``relative: absolute``: at most 50 ms slower than the stable;
- accuracy ``maxDecrease 0.05`` (ratio): at least stable x 0.95 (85.5 %).

Under these, accuracy -3 points (87 %) and latency x1.2 (p95 +27 ms) are
within tolerance: promoting them is right. Latency x1.2 and the p99-only
change are therefore also run against ``p95 <= stable x1.05`` (and
``p99 <= stable x1.05``), with its own identical-versions row.

The sequential judge needs a tolerance against the stable where the example
has only an absolute ceiling: error rate <= stable x 1.5 (a 1 % stable may
go to 1.5 %, not 2 %), with the ceiling kept as a guard rail. Accuracy and
latency take the example's tolerances as they are.

Judges side by side, on the very same request streams:

- ``today``: the operator as released: ``verdicts.judge`` per SLO on 30 s
  windows read every 5 s (point estimates; ``minSamples 20`` on the
  candidate's samples query; the stable's value taken as exact), failures
  counted over the whole release, roll back when failures > failureLimit 1;
- ``threshold (fixed)``: the ``threshold`` judge: a minimum sample count
  derived from each limit (3 events' worth, at least minSamples, for the
  stable too), failed windows that overlap count once
  (``independent_failures``), roll back past failureLimit 1;
- ``sequential``: counts since the candidate started, anytime-valid tests,
  a Fail rolls back at once; false-rollback budget 5 % per release.

``today`` reproduces issue 7's own measurement within 8 points (printed
below the table): a little lower at 5 req/s with the split moving at once, a
little higher with ``--ready 5``; the issue's simulation sits in between.

"Needed" is what the sequential judge says it needs to decide a cell if its
estimates were exact (its own ``samples_needed`` on the true rates, at the
first step's split); "had" is the candidate requests the first step gets by
its deadline. Detection targets apply where had >= needed.
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

from slipway.analysis import verdicts
from slipway.analysis.judges import (
    Counts,
    CountSLO,
    ErrorBudget,
    Histogram,
    LatencySLO,
    SequentialJudge,
    SLOBudget,
    ThresholdJudge,
    Tolerance,
    histograms,
)
from slipway.analysis.judges.sequential import tail_bucket
from slipway.analysis.judges.threshold import (
    DEFAULT_MIN_EVENTS,
    independent_failures,
    minimum_samples,
)
from slipway.api.models import SLO
from slipway.api.phases import Verdict

TICK = 5  # seconds between analyses (the example's interval)
WINDOW_TICKS = 6  # the example's 30 s windows
STEPS = (25, 50, 75)
RATES = (5, 20, 100)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, math.inf)
LATENCY_MEDIAN, LATENCY_SIGMA = 0.05, 0.6  # p50 50 ms, p95 134 ms, p99 202 ms
STABLE_ERRORS, STABLE_ACCURACY = 0.01, 0.90

# examples/manifests/fraud-model.yaml, as shipped.
EXAMPLE_PAUSE = 10  # seconds per step
MIN_SAMPLES, FAILURE_LIMIT = 20, 1  # inconclusiveLimit 6 only shows a step as Paused
ERROR_MAX = 0.02
P95_MAX, P95_INCREASE = 0.25, 0.05  # seconds; maxIncrease with relative: absolute
ACCURACY_DECREASE = 0.05  # ratio: stable x 0.95
# Not in the example, chosen for the sequential judge (see the module docstring).
ERROR_RELATIVE = 0.5  # error rate <= stable x 1.5
TIGHT_LATENCY = 0.05  # the latency variant: quantile <= stable x 1.05

# Issue 7's measurement of today's behaviour: share rolled back at 5, 20, 100 req/s.
ISSUE_TODAY = {
    "identical": (0.67, 0.44, 0.07),
    "error rate x2": (0.83, 0.73, 0.72),
    "accuracy -3 pts": (0.81, 0.69, 0.35),
}

Latency = Literal["same", "x1.2", "p99"]
Rule = Literal["example", "p95 <= stable x1.05", "p99 <= stable x1.05"]
Outcome = Literal["promoted", "rolled back", "undecided"]
Style = Literal["today", "fixed", "sequential"]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Scenario:
    """One candidate version: its truth, the latency SLO, and whether rolling back is right."""

    name: str
    truth: str
    errors: float = STABLE_ERRORS
    accuracy: float = STABLE_ACCURACY
    latency: Latency = "same"
    rule: Rule = "example"
    regression: bool = True
    target: bool = False  # detection target applies (issue 7)

    @property
    def label(self) -> str:
        return self.name if self.rule == "example" else f"{self.name}, {self.rule}"


SCENARIOS = (
    Scenario("identical", "within tolerance", regression=False),
    Scenario("error rate x2", "> stable x1.5; = the max 2%", errors=0.02, target=True),
    Scenario("accuracy -3 pts", "87% >= stable x0.95: within", accuracy=0.87, regression=False),
    Scenario("accuracy -6 pts", "84% < stable x0.95", accuracy=0.84, target=True),
    Scenario("latency x1.2", "p95 +27ms <= +50ms: within", latency="x1.2", regression=False),
    Scenario("identical", "within tolerance", rule="p95 <= stable x1.05", regression=False),
    Scenario("latency x1.2", "p95 x1.2", latency="x1.2", rule="p95 <= stable x1.05", target=True),
    Scenario(
        "p99-only +20%",
        "p95 unchanged",
        latency="p99",
        rule="p95 <= stable x1.05",
        regression=False,
    ),
    Scenario("p99-only +20%", "p99 x1.2", latency="p99", rule="p99 <= stable x1.05"),
)


def latency_slo(rule: Rule) -> LatencySLO:
    """The latency SLO of a rule, for the judges (the same numbers as ``today_slos``)."""
    if rule == "example":
        return LatencySLO("latency-p95", 0.95, Tolerance(absolute=P95_INCREASE), P95_MAX)
    if rule == "p95 <= stable x1.05":
        return LatencySLO("latency-p95", 0.95, Tolerance(relative=TIGHT_LATENCY), P95_MAX)
    return LatencySLO("latency-p99", 0.99, Tolerance(relative=TIGHT_LATENCY))


def typed_slos(rule: Rule, sequential: bool) -> tuple[CountSLO, CountSLO, LatencySLO]:
    """The SLOs the threshold and sequential judges read (the example's, see the docstring)."""
    tolerance = Tolerance(relative=ERROR_RELATIVE) if sequential else None
    return (
        CountSLO("error-rate", "lower", tolerance, bound=ERROR_MAX, metric="error rate"),
        CountSLO("accuracy", "higher", Tolerance(relative=ACCURACY_DECREASE), metric="accuracy"),
        latency_slo(rule),
    )


def today_slos(rule: Rule) -> tuple[SLO, SLO, SLO]:
    """The example's raw-PromQL SLOs as the operator's ``verdicts.judge`` reads them.

    The queries are never run (the benchmark computes their values from the
    counts, as Prometheus would), so they are only named.
    """

    def slo(name: str, threshold: dict[str, object]) -> SLO:
        return SLO.model_validate(
            {
                "name": name,
                "query": f"{name} of {{{{release}}}}",
                "samplesQuery": "requests of {{release}}",
                "window": f"{WINDOW_TICKS * TICK}s",
                "threshold": threshold,
            }
        )

    latency: dict[str, object] = {"max": P95_MAX, "maxIncrease": P95_INCREASE}
    if rule == "example":
        latency["relative"] = "absolute"
    elif rule == "p99 <= stable x1.05":
        latency = {"maxIncrease": TIGHT_LATENCY}
    else:
        latency["maxIncrease"] = TIGHT_LATENCY
    return (
        slo("error-rate", {"max": ERROR_MAX}),
        slo("latency", latency),
        slo("accuracy", {"maxDecrease": ACCURACY_DECREASE}),
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


def expected_histogram(kind: Latency, n: float) -> Histogram:
    return Histogram(BUCKETS, tuple(n * latency_cdf(kind, b) for b in BUCKETS))


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


Snapshot = tuple[int, int, int, tuple[int, ...]]


@dataclass
class Tally:
    """One version's counts since the candidate started, and every tick's snapshot."""

    snapshots: list[Snapshot] = field(default_factory=lambda: [(0, 0, 0, (0,) * len(BUCKETS))])

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

    def since(self, ticks_back: int | None) -> Snapshot:
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


Judging = Callable[[Tally, Tally], Verdict]


def _ratio(events: int, total: int) -> float:
    """Prometheus' ``a / b`` of two window increases: NaN for 0 / 0."""
    return events / total if total > 0 else math.nan


def judging_today(scenario: Scenario) -> Judging:
    """A tick as the released operator judges it: ``verdicts.judge`` on 30 s windows."""
    errors, latency, accuracy = today_slos(scenario.rule)
    quantile = 0.99 if scenario.rule == "p99 <= stable x1.05" else 0.95

    def judge_tick(candidate: Tally, stable: Tally) -> Verdict:
        nc, ec, cc, hc = candidate.since(WINDOW_TICKS)
        ns, _, cs, hs = stable.since(WINDOW_TICKS)
        p_c = histograms.quantile(_histogram(hc), quantile)
        p_s = histograms.quantile(_histogram(hs), quantile)
        return verdicts.combine(
            [
                verdicts.judge(errors, _ratio(ec, nc), None, nc, MIN_SAMPLES),
                verdicts.judge(latency, p_c, p_s, nc, MIN_SAMPLES),
                verdicts.judge(accuracy, _ratio(cc, nc), _ratio(cs, ns), nc, MIN_SAMPLES),
            ]
        )

    return judge_tick


def judging(
    judge: SequentialJudge | ThresholdJudge,
    scenario: Scenario,
    budget: SLOBudget,
    window: int | None,
) -> Judging:
    """A function judging every SLO of a tick from the two tallies, combined."""
    errors, accuracy, latency = typed_slos(scenario.rule, isinstance(judge, SequentialJudge))

    def judge_tick(candidate: Tally, stable: Tally) -> Verdict:
        nc, ec, cc, hc = candidate.since(window)
        ns, es, cs, hs = stable.since(window)
        found = Verdict.PASS
        for judged in (
            judge.counts(errors, Counts(ec, nc), Counts(es, ns), budget),
            judge.counts(accuracy, Counts(cc, nc), Counts(cs, ns), budget),
            judge.latency(latency, _histogram(hc), _histogram(hs), budget),
        ):
            if judged.verdict is Verdict.FAIL:
                return Verdict.FAIL
            if judged.verdict is Verdict.INCONCLUSIVE:
                found = Verdict.INCONCLUSIVE
        return found

    return judge_tick


@dataclass(frozen=True)
class Result:
    """How one rollout ended, and when."""

    outcome: Outcome
    seconds: int


@dataclass(frozen=True)
class Schedule:
    """The canary: pause per step, how long after it a step may wait for a Pass, and how
    long a new step's pods take to be ready (its weight is reached, its pause starts)."""

    pause_ticks: int
    deadline_ticks: int
    ready_ticks: int = 0

    @property
    def ticks(self) -> int:
        return (self.ready_ticks + self.pause_ticks + self.deadline_ticks + 1) * len(STEPS)


def roll_out(streams: Streams, judge_tick: Judging, schedule: Schedule, style: Style) -> Result:
    """One canary, tick by tick, as the operator would run it with this judge.

    ``style``: ``sequential`` (a Fail rolls back at once), ``today``
    (failures counted over the release), or ``fixed`` (failures of
    overlapping windows counted once); both threshold styles roll back when
    the failures counted exceed failureLimit. Every style advances a step once
    its weight is reached (``ready_ticks`` after the step began: until then
    the old split holds), its pause is over and the latest analysis since
    passed. Times count from the candidate's first ready pod.
    """
    candidate, stable = Tally(), Tally()
    step, reached = 0, 0  # the step, and the tick its weight was reached
    failures: list[int] = []
    for tick in range(1, schedule.ticks + 1):
        i, split = tick - 1, step if tick > reached else step - 1
        for tally, v in ((candidate, 0), (stable, 1)):
            tally.add(
                streams.requests[v][split][i],
                streams.errors[v][split][i],
                streams.correct[v][split][i],
                streams.buckets[v][split][i],
            )
        verdict = judge_tick(candidate, stable)
        now = tick * TICK
        if verdict is Verdict.FAIL:
            if style == "sequential":
                return Result("rolled back", now)
            failures.append(tick)
            counted = (
                len(failures) if style == "today" else independent_failures(failures, WINDOW_TICKS)
            )
            if counted > FAILURE_LIMIT:
                return Result("rolled back", now)
        # inconclusiveLimit only decides whether a step shows Paused: it never advances one.
        waited = tick - reached
        if waited >= schedule.pause_ticks and verdict is Verdict.PASS:
            step, reached = step + 1, tick + schedule.ready_ticks
            if step == len(STEPS):
                return Result("promoted", now)
        elif waited >= schedule.pause_ticks + schedule.deadline_ticks:
            return Result("undecided", now)  # held, or rolled back for want of evidence
    return Result("undecided", schedule.ticks * TICK)


JUDGES: tuple[tuple[str, Style], ...] = (
    ("today", "today"),
    ("threshold (fixed)", "fixed"),
    ("sequential", "sequential"),
)


def contestants(scenario: Scenario) -> dict[str, tuple[Judging, Style]]:
    """Each judge as the operator would configure it, with its rollout style."""
    budget = ErrorBudget().per_slo(3)
    ticks: dict[Style, Judging] = {
        "today": judging_today(scenario),
        "fixed": judging(ThresholdJudge(min_samples=MIN_SAMPLES), scenario, budget, WINDOW_TICKS),
        "sequential": judging(SequentialJudge(), scenario, budget, None),
    }
    return {name: (ticks[style], style) for name, style in JUDGES}


def needed(scenario: Scenario) -> float:
    """Candidate samples the sequential judge says it needs, fed the true rates.

    At the first step's split. Within tolerance: every SLO must pass. A
    regression: the first SLO whose estimate is beyond its limit to fail.
    """
    share = STEPS[0] / 100.0
    n_c = 200.0  # few enough that nothing is decided yet
    n_s = n_c * (1.0 - share) / share
    errors, accuracy, latency = typed_slos(scenario.rule, sequential=True)
    budget = ErrorBudget().per_slo(3)
    judge = SequentialJudge()
    wrong_c, wrong_s = 1.0 - scenario.accuracy, 1.0 - STABLE_ACCURACY
    judged = (
        judge.counts(
            errors, Counts(scenario.errors * n_c, n_c), Counts(STABLE_ERRORS * n_s, n_s), budget
        ),
        judge.counts(
            accuracy, Counts((1.0 - wrong_c) * n_c, n_c), Counts((1.0 - wrong_s) * n_s, n_s), budget
        ),
        judge.latency(
            latency,
            expected_histogram(scenario.latency, n_c),
            expected_histogram("same", n_s),
            budget,
        ),
    )
    needs: list[float] = []
    for judgement in judged:
        for check in judgement.checks:
            if check.candidate is None or check.limit is None:
                return math.inf
            # Beyond the limit: a bad share (error rate, share slower than a bound) above
            # it, or a good share (accuracy) below it.
            beyond = (check.candidate - check.limit) * (
                -1.0 if check.metric == "accuracy" else 1.0
            ) > 0
            if beyond if scenario.regression else check.verdict is not Verdict.PASS:
                needs.append(math.inf if check.samples_needed is None else check.samples_needed)
    if not needs:
        return 0.0 if not scenario.regression else math.inf
    return max(needs) if not scenario.regression else min(needs)


def _z(quantile: float) -> float:
    """The standard normal quantile, by bisection (no SciPy needed)."""
    low, high = -10.0, 10.0
    for _ in range(100):
        mid = 0.5 * (low + high)
        low, high = (
            (mid, high) if 0.5 * (1.0 + math.erf(mid / math.sqrt(2.0))) < quantile else (low, mid)
        )
    return 0.5 * (low + high)


def resolution(rule: Rule) -> str:
    """What the sequential judge tests for a latency SLO, on the stable's true histogram."""
    slo = latency_slo(rule)
    assert slo.tolerance is not None
    stable = expected_histogram("same", 1e6)
    index = tail_bucket(stable, slo.quantile)
    assert index is not None
    bound = stable.bounds[index]
    share = histograms.slower_than(stable, index) / histograms.total(stable)
    allowed_at = (bound - slo.tolerance.absolute) / (1.0 + slo.tolerance.relative)
    allowed = histograms.tail_share_at(stable, allowed_at)
    effect = allowed / share - 1.0
    used = max(effect, slo.min_effect)
    widened = "" if used == effect else f", widened to min_effect {slo.min_effect:.0%}"
    true = LATENCY_MEDIAN * math.exp(LATENCY_SIGMA * _z(slo.quantile))
    read = histograms.quantile(stable, slo.quantile)
    return (
        f"{slo.label} <= {slo.tolerance.describe('lower', 's')}: the stable's"
        f" {slo.label} ({true * 1000:.0f} ms; histogram_quantile reads {read * 1000:.0f} ms"
        " inside its bucket) is judged by"
        f" the share slower than the {bound:g} s bound ({share:.2%}); the limit is the stable's"
        f" share above {allowed_at:.3g} s ({allowed:.2%}), +{effect:.1%}{widened}."
    )


@dataclass(frozen=True)
class Cell:
    """A batch of one (scenario, traffic) cell's rollouts (batches balance the workers)."""

    scenario: int
    rate: int
    trials: int
    seed: int
    schedule: Schedule
    batch: int = 0


BATCH = 50


def run_cell(cell: Cell) -> dict[str, list[Result]]:
    """Every judge on the same seeded rollouts of one (scenario, traffic) cell."""
    scenario = SCENARIOS[cell.scenario]
    rng = np.random.default_rng([cell.seed, cell.scenario, cell.rate, cell.batch])
    players = contestants(scenario)
    results: dict[str, list[Result]] = {name: [] for name in players}
    for _ in range(cell.trials):
        streams = draw(rng, scenario, cell.rate, cell.schedule.ticks)
        for name, (judge_tick, style) in players.items():
            results[name].append(roll_out(streams, judge_tick, cell.schedule, style))
    return results


def share(results: list[Result], outcome: Outcome) -> float:
    return sum(r.outcome == outcome for r in results) / len(results)


def median_time(results: list[Result]) -> str:
    """Median time to promotion or rollback: ``35s``, ``4.2m``; ``-`` when none decided."""
    decided = [r.seconds for r in results if r.outcome != "undecided"]
    if not decided:
        return "-"
    seconds = statistics.median(decided)
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def had(rate: int, schedule: Schedule) -> float:
    """Candidate requests the first step gets by its deadline."""
    return rate * STEPS[0] / 100 * (schedule.pause_ticks + schedule.deadline_ticks) * TICK


Table = dict[tuple[int, int], dict[str, list[Result]]]


def report(table: Table, schedule: Schedule, trials: int) -> list[str]:
    """One row per scenario and judge; per traffic level: rolled back, held, median time."""
    name_width, judge_width, cell = 36, 18, 23
    lines = [
        f"{'':{name_width + judge_width}}" + "".join(f"{f'{r} req/s':>{cell}}" for r in RATES),
        f"{'candidate':{name_width}}{'judge':{judge_width}}"
        + f"{'rollback   held  time':>{cell}}" * len(RATES),
    ]
    for s, scenario in enumerate(SCENARIOS):
        lines.append("")
        for j, (judge, _) in enumerate(JUDGES):
            label = scenario.label if j == 0 else ""
            if j == 1:
                truth = "a regression" if scenario.regression else "within tolerance"
                label = f"  ({truth})"
            elif j == 2:
                label = f"  {scenario.truth}"
            cells = []
            for r in RATES:
                results = table[(s, r)][judge]
                cells.append(
                    f"{share(results, 'rolled back'):7.1%} {share(results, 'undecided'):6.1%}"
                    f" {median_time(results):>5}"
                )
            lines.append(
                f"{label:{name_width}}{judge:{judge_width}}"
                + "".join(f"{c:>{cell}}" for c in cells)
            )
        need = needed(scenario)
        shown = "never" if math.isinf(need) else f"{need:,.0f}"
        lines.append(
            f"{'':{name_width}}{'needed / had':{judge_width}}"
            + "".join(f"{f'{shown} / {had(r, schedule):,.0f}':>{cell}}" for r in RATES)
        )
    budget = ErrorBudget()
    floor_samples = minimum_samples(ERROR_MAX, DEFAULT_MIN_EVENTS, MIN_SAMPLES)
    notes = [
        "rollback: share rolled back on failed analyses (a FALSE rollback where the candidate"
        " is within tolerance); held: no passing analysis by the step's deadline (the tier's"
        " onInconclusive then holds or rolls back); time: median time to promotion or rollback."
        " needed / had: candidate samples the sequential judge says it needs on the true rates"
        " / candidate requests in the first step by its deadline.",
        f"{trials} rollouts per cell; steps {'/'.join(map(str, STEPS))} %, pause"
        f" {schedule.pause_ticks * TICK}s (pods ready after {schedule.ready_ticks * TICK}s),"
        f" deadline {schedule.deadline_ticks * TICK // 60} min"
        f" after the pause, analysis every {TICK}s, windows {WINDOW_TICKS * TICK}s (today,"
        f" threshold), minSamples {MIN_SAMPLES}, failureLimit {FAILURE_LIMIT}.",
        f"SLOs (the example's): error rate <= {ERROR_MAX:.0%} (sequential also <= stable"
        f" x{1 + ERROR_RELATIVE:g}); accuracy >= stable x{1 - ACCURACY_DECREASE:g}; p95 <="
        f" {P95_MAX:g}s and <= stable+{P95_INCREASE:g}s, or as the row says. Sequential"
        f" budget: false rollback {budget.false_rollback:.0%} per release over 3 SLOs, false"
        f" promotion {budget.false_promotion:.0%} per SLO.",
        "threshold (fixed) judges a window only with 3 events' worth of samples: error rate"
        f" <= {ERROR_MAX:.0%} needs {floor_samples:.0f}"
        " requests per 30 s window (the first step gets ~38 at 5 req/s): it cannot pass there,"
        " and while held it keeps counting failed windows of the other SLOs.",
        *(
            f"Latency, sequential: {resolution(rule)}"
            for rule in ("example", "p95 <= stable x1.05", "p99 <= stable x1.05")
        ),
    ]
    return [*lines, "", *(wrapped for note in notes for wrapped in textwrap.wrap(note, 110))]


def reproduction(table: Table) -> list[str]:
    """``today`` beside issue 7's own measurement of today's behaviour."""
    lines = ["", "today vs issue 7's measurement (rolled back)" + " " * 8]
    lines[-1] += "".join(f"{f'{r} req/s':>16}" for r in RATES)
    for name, figures in ISSUE_TODAY.items():
        s = next(i for i, x in enumerate(SCENARIOS) if x.label == name)
        cells = [
            f"{share(table[(s, r)]['today'], 'rolled back'):.0%} ({issue:.0%})"
            for r, issue in zip(RATES, figures, strict=True)
        ]
        lines.append(f"  {name:50}" + "".join(f"{c:>16}" for c in cells))
    return lines


def verdict_targets(table: Table, schedule: Schedule) -> list[str]:
    """The issue's targets for the sequential judge, checked against the figures.

    A detection target applies only where a step can gather the samples the
    judge says it needs ("n/a" otherwise: it holds and says so instead).
    """
    lines = [
        "",
        "targets (sequential)" + " " * 32 + "".join(f"{f'{r} req/s':>16}" for r in RATES),
    ]
    met = True
    for s, scenario in enumerate(SCENARIOS):
        if scenario.name != "identical" and not scenario.target:
            continue
        marks = []
        for r in RATES:
            rolled = share(table[(s, r)]["sequential"], "rolled back")
            if scenario.name == "identical":
                ok: bool | None = rolled <= 0.01
            elif had(r, schedule) >= needed(scenario):
                ok = rolled >= 0.95
            else:
                ok = None
            met = met and ok is not False
            mark = "n/a" if ok is None else "ok" if ok else "MISSED"
            marks.append(f"{rolled:7.1%} {mark:>6}")
        what = "false rollback <= 1%" if scenario.name == "identical" else "detected >= 95%"
        lines.append(f"  {scenario.label + ', ' + what:50}" + "".join(f"{m:>16}" for m in marks))
    lines.append(
        "  all targets met" if met else "  TARGETS MISSED (see above)",
    )
    lines.append(
        "  (n/a: the first step cannot gather the samples the judge says it needs by its"
        " deadline; it holds and says so)"
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=500, help="rollouts per cell (500)")
    parser.add_argument("--quick", action="store_true", help="100 rollouts per cell")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--pause", type=int, default=EXAMPLE_PAUSE, help=f"seconds per step ({EXAMPLE_PAUSE})"
    )
    parser.add_argument(
        "--deadline", type=int, default=20, help="minutes a step may wait after its pause (20)"
    )
    parser.add_argument(
        "--ready",
        type=int,
        default=0,
        help="seconds a new step's pods take to be ready, in whole ticks (0: at once)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    trials = 100 if args.quick else args.trials
    schedule = Schedule(
        pause_ticks=max(1, args.pause // TICK),
        deadline_ticks=max(1, args.deadline * 60 // TICK),
        ready_ticks=max(0, args.ready // TICK),
    )
    cells = [
        Cell(s, r, min(BATCH, trials - start), args.seed, schedule, start // BATCH)
        for s in range(len(SCENARIOS))
        for r in RATES
        for start in range(0, trials, BATCH)
    ]
    started = time.monotonic()
    print(
        f"[bench-decisions] {len(SCENARIOS) * len(RATES)} cells x {trials} rollouts"
        f" x {len(JUDGES)} judges"
        f" on {args.workers} workers",
        flush=True,
    )
    with multiprocessing.Pool(args.workers) as pool:
        # Slow cells (low traffic: every rollout runs to its deadline) first.
        order = sorted(cells, key=lambda c: c.rate)
        answers = pool.map(run_cell, order, chunksize=1)
    table: Table = {}
    for c, answer in zip(order, answers, strict=True):
        merged = table.setdefault((c.scenario, c.rate), {name: [] for name, _ in JUDGES})
        for name, results in answer.items():
            merged[name] += results
    lines = report(table, schedule, trials) + reproduction(table)
    for line in lines + verdict_targets(table, schedule):
        print(line)
    print(f"\n[bench-decisions] done in {time.monotonic() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
