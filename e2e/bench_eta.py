"""Can people plan with the first ETAs? ``samplesNeeded``/``etaSeconds`` calibration, printed.

The README tells users to size the first pause from the first ``etaSeconds``.
This replays seeded first steps of a canary with identical versions (the
case a plan is for: a release that should pass) through the very judge and
ETA code the operator runs, and prints how often the decision came by the
first stated ETA, next to the figure today's formula gave (issue 13: 4-14x
too long at the median, yet 7-20 % exceeded).

The world (stated, so the figures can be argued with):

- the release starts at t = 0; the candidate's pods take ``ready`` seconds
  before they serve; then it gets ``weight`` of ``rate`` req/s (Poisson per
  tick), the stable the rest (all of it before);
- independent requests; both versions err at ``bad`` (error rate 1 %, or
  accuracy 90 %, i.e. 10 % wrong);
- the example's SLO checks against the stable, one at a time (error rate at
  most 2 points above the stable; accuracy at most 5 points below), each with
  its share of the example's budget (3 SLOs, 5 %); the check is read every
  ``tick`` seconds from the release's start, like the operator's typed SLOs;
- the judge gets each version's counts per tick as one source (the operator
  reads them per pod from Prometheus), which is where it reads the split
  going on;
- "today": ``samplesNeeded`` planned on the current estimate at 95 %, turned
  into seconds at the candidate's samples per second since the release's
  start; "now": the judge's ``samples_needed`` (90 % for a candidate as good
  as the stable) at the candidate's samples per second since it first
  served (``typed.eta_seconds``), rounded up to the look that can decide.

A rollout counts where the first look that has candidate samples is
undecided and states an ETA; "by ETA" is the share of those decided (Pass
or Fail) no later than that look's time plus its ETA.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slipway.analysis.judges import (
    Counts,
    CountSLO,
    ErrorBudget,
    SequentialJudge,
    Source,
    Tolerance,
)
from slipway.analysis.judges.sequential import PLANNING_PROBABILITY, one_sided_level
from slipway.analysis.typed import eta_seconds
from slipway.api.phases import Verdict

JUDGE = SequentialJudge()
BUDGET = ErrorBudget().per_slo(3)  # the example's three SLOs share 5 %
SLOS = {
    "error rate": (CountSLO("error-rate", "lower", Tolerance(absolute=0.02)), 0.01),
    "accuracy": (CountSLO("accuracy", "higher", Tolerance(absolute=0.05)), 0.10),
}
"""The example's checks against the stable, and the share of bad requests (errors, wrong)."""


@dataclass(frozen=True, slots=True)
class EtaCalibration:
    """How the first stated ETAs of ``rollouts`` seeded first steps came true.

    ``*_by_eta``: share decided no later than the first look's time plus its
    ETA (target: ``stated``); ``*_ratio``: median of stated ETA / the time the
    decision actually took from that look (1 is exact, > 1 too long);
    ``counted``: rollouts whose first look was undecided with an ETA (the rest
    decided at once or stated none); ``undecided``: no decision by ``deadline``.
    """

    slo: str
    rate: float
    stated: float
    rollouts: int
    counted: int
    now_by_eta: float
    now_ratio: float
    today_by_eta: float
    today_ratio: float
    undecided: int


def eta_calibration(
    rate: float,
    slo: str = "error rate",
    *,
    rollouts: int = 300,
    seed: int = 1,
    weight: float = 0.25,
    ready: float = 20.0,
    tick: float = 5.0,
    deadline: float = 3600.0,
) -> EtaCalibration:
    """Replay ``rollouts`` seeded first steps at ``rate`` req/s for one of ``SLOS``."""
    spec, bad = SLOS[slo]
    tolerance = spec.tolerance
    assert tolerance is not None
    now_hits: list[bool] = []
    today_hits: list[bool] = []
    now_ratios: list[float] = []
    today_ratios: list[float] = []
    undecided = 0
    for i in range(rollouts):
        rng = np.random.default_rng(seed * 1_000_003 + i)
        n_c = e_c = n_s = e_s = 0.0
        first: tuple[float, float, float] | None = None  # look time, ETA now, ETA today
        served_since: float | None = None
        t = 0.0
        decided_at: float | None = None
        steps: list[tuple[float, float, float, float]] = []  # per tick: the sources' counts
        while t < deadline:
            start, t = t, t + tick
            serving = max(0.0, t - max(start, ready))
            if serving > 0 and served_since is None:
                served_since = max(start, ready)
            c = float(rng.poisson(rate * weight * serving))
            s = float(rng.poisson(rate * (tick - weight * serving)))
            bad_c, bad_s = float(rng.binomial(int(c), bad)), float(rng.binomial(int(s), bad))
            n_c, n_s, e_c, e_s = n_c + c, n_s + s, e_c + bad_c, e_s + bad_s
            good = spec.better == "higher"
            steps.append((c - bad_c if good else bad_c, c, s - bad_s if good else bad_s, s))
            if n_c <= 0:
                continue
            columns = list(zip(*steps, strict=True))
            judged = JUDGE.counts(
                spec,
                Counts(n_c - e_c if good else e_c, n_c, (Source("c", columns[0], columns[1]),)),
                Counts(n_s - e_s if good else e_s, n_s, (Source("s", columns[2], columns[3]),)),
                BUDGET,
            )
            if judged.verdict is not Verdict.INCONCLUSIVE:
                decided_at = t
                break
            if first is None:
                check = judged.deciding
                assert check is not None and served_since is not None
                now = eta_seconds(n_c, check.samples_needed, t - served_since, tick)
                needed_today = _today_samples_needed(e_c, n_c, e_s, n_s, tolerance.absolute)
                today = None  # today's: the pace since the release started, as it was
                if needed_today is not None and needed_today > n_c:
                    today = (needed_today - n_c) / (n_c / t)
                first = (t, now or math.inf, today or math.inf)
                if now is None and today is None:
                    break
        if first is None:
            continue  # decided at the first look with samples: nothing was planned
        if decided_at is None:
            undecided += 1
            decided_at = math.inf
        look, now, today = first
        took = decided_at - look
        now_hits.append(took <= now)
        today_hits.append(took <= today)
        if math.isfinite(took) and took > 0:
            now_ratios.append(now / took)
            today_ratios.append(today / took)
    counted = len(now_hits)
    return EtaCalibration(
        slo=slo,
        rate=rate,
        stated=PLANNING_PROBABILITY,
        rollouts=rollouts,
        counted=counted,
        now_by_eta=sum(now_hits) / counted if counted else math.nan,
        now_ratio=statistics.median(now_ratios) if now_ratios else math.nan,
        today_by_eta=sum(today_hits) / counted if counted else math.nan,
        today_ratio=statistics.median(today_ratios) if today_ratios else math.nan,
        undecided=undecided,
    )


def _today_samples_needed(
    bad_c: float, n_c: float, bad_s: float, n_s: float, absolute: float
) -> float | None:
    """Today's planning (before issue 13) for ``q_c <= q_s + absolute``: 95 % if the current
    estimates hold, at the current margin (sequential.py as released, reproduced)."""
    pass_alpha = BUDGET.pass_alpha
    fail_alpha = BUDGET.fail_alpha
    margin = bad_c / n_c - (bad_s / n_s + absolute)
    alpha = fail_alpha if margin > 0 else pass_alpha
    distance, tau = abs(margin), absolute
    if distance <= 0:
        return None

    def share(bad: float, total: float) -> float:
        return min(max(bad, 0.5), max(total - 0.5, 0.5)) / max(total, 1.0)

    qc, qs = share(bad_c, n_c), share(bad_s, n_s)
    per_sample = qc * (1 - qc) + qs * (1 - qs) * n_c / n_s
    spend = 2.0 * math.log(1.0 / one_sided_level(alpha))

    def reach(samples: float) -> float:
        variance = per_sample / samples
        ratio = tau * tau / variance
        factor = math.sqrt((1.0 + 1.0 / ratio) * (spend + math.log1p(ratio)))
        return math.sqrt(variance) * (factor + 1.645)

    if reach(1e9) > distance:
        return None
    if reach(max(n_c, 1.0)) <= distance:
        return math.floor(n_c) + 1.0
    low, high = math.log(max(n_c, 1.0)), math.log(1e9)
    while high - low > 0.005:
        mid = 0.5 * (low + high)
        low, high = (low, mid) if reach(math.exp(mid)) <= distance else (mid, high)
    return float(math.ceil(math.exp(high)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rates", default="5,20,100")
    parser.add_argument("--ready", type=float, default=20.0, help="seconds before pods serve")
    parser.add_argument("--tick", type=float, default=5.0, help="seconds between looks")
    args = parser.parse_args(argv)
    print(
        f"First ETA of identical versions at 25 %: share decided by it (target"
        f" {PLANNING_PROBABILITY:.0%} for 'now') and median stated/actual time;"
        f" {args.rollouts} seeded rollouts, pods ready after {args.ready:g} s,"
        f" looks every {args.tick:g} s"
    )
    print(
        f"{'SLO':11} {'req/s':>5} {'counted':>7} {'now: by ETA':>12} {'ETA/actual':>10}"
        f" {'today: by ETA':>14} {'ETA/actual':>10} {'undecided':>9}"
    )
    for slo in SLOS:
        for rate in (float(r) for r in args.rates.split(",")):
            c = eta_calibration(
                rate, slo, rollouts=args.rollouts, seed=args.seed, ready=args.ready, tick=args.tick
            )
            print(
                f"{slo:11} {rate:5g} {c.counted:7d} {c.now_by_eta:12.1%} {c.now_ratio:10.2f}"
                f" {c.today_by_eta:14.1%} {c.today_ratio:10.2f} {c.undecided:9d}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
