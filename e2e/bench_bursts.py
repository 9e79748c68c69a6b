"""Errors in bursts: false rollbacks of identical models, and power kept, printed (not asserted).

Issue 13 section 4: with each pod's error rate varying over time (same mean),
identical versions were rolled back 7-13 % of the time at 20-500 req/s. This
replays seeded canaries through the very judge the operator runs
(``SequentialJudge.counts``), once as today (``Counts`` without per-pod
counts: requests taken as independent) and once with the per-pod, per-step
counts the operator now reads from Prometheus (``Counts.sources``), and
prints both next to each other.

The world (stated, so the figures can be argued with):

- ``rate`` req/s spread evenly over 4 pods (Poisson per pod and step); the
  canary of ``examples/manifests/fraud-model.yaml``: 25/50/75 % as 1/2/3 of
  the 4 pods, pauses 30/10/10 s, analysis every 5 s; a step advances once its
  pause is over and its latest look passed (``min_step`` seconds at least,
  standing in for the slower SLOs), so a Fail at any look rolls back;
- the stable errs 1 % on average; each pod's rate is a gamma variable with that
  mean and coefficient of variation ``cv``, drawn anew every ``burst`` seconds
  (each pod its own phase); ``cv = 0``: independent errors;
- the error-rate SLO of the example (at most 2 points above the stable, never
  above 5 %), its share of the release's 5 % false-rollback budget (1/3);
- with sources: the stable's pods are read ``history`` seconds back before the
  candidate started (the operator's lookback), in 5 s steps.
"""

from __future__ import annotations

import argparse
import multiprocessing
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
from slipway.api.phases import Verdict

TICK = 5  # seconds per analysis and per step of the sources
PODS = 4
STEPS = ((1, 30), (2, 10), (3, 10))  # candidate pods, pause seconds
ERRORS = CountSLO("error-rate", "lower", Tolerance(absolute=0.02), bound=0.05, metric="error rate")
BUDGET = ErrorBudget().per_slo(3)  # the example has three SLOs
JUDGE = SequentialJudge()


@dataclass(frozen=True, slots=True)
class World:
    """One cell: traffic, the stable's and candidate's mean error rates, the bursts."""

    rate: float
    cv: float = 0.0
    burst: float = 30.0
    stable_errors: float = 0.01
    candidate_errors: float = 0.01
    history: float = 600.0
    min_step: float = 30.0
    deadline: float = 600.0


@dataclass(frozen=True, slots=True)
class Rollout:
    """How one rollout ended: ``verdict`` (Fail, Pass or Inconclusive) after ``seconds``."""

    verdict: Verdict
    seconds: float


def pod_rates(
    rng: np.random.Generator, mean: float, cv: float, burst: float, ticks: int
) -> np.ndarray:
    """Each pod's error rate per tick (pods x ticks): gamma, redrawn every ``burst`` seconds."""
    if cv <= 0:
        return np.full((PODS, ticks), mean)
    shape = 1.0 / (cv * cv)
    per = max(1, round(burst / TICK))
    out = np.empty((PODS, ticks))
    for pod in range(PODS):
        phase = int(rng.integers(per))
        blocks = (ticks + phase) // per + 1
        drawn = rng.gamma(shape, mean / shape, size=blocks)
        out[pod] = np.repeat(drawn, per)[phase : phase + ticks]
    return np.minimum(out, 1.0)


def rollout(world: World, seed: int, with_sources: bool) -> Rollout:
    """One seeded canary judged at every tick; the same seed gives the same requests."""
    rng = np.random.default_rng(seed)
    before = round(world.history / TICK)
    ticks = before + round(world.deadline / TICK)
    per_pod = world.rate / PODS * TICK
    totals = rng.poisson(per_pod, size=(PODS, ticks)).astype(float)
    stable_rates = pod_rates(rng, world.stable_errors, world.cv, world.burst, ticks)
    scale = world.candidate_errors / world.stable_errors
    uniform = rng.random((PODS, ticks))
    # Errors by inverting each pod-step's binomial with one uniform, so a pod's errors do not
    # depend on which version it serves except through the rate (common random numbers).
    errors_stable = _binomial(totals, stable_rates, uniform)
    errors_candidate = _binomial(totals, np.minimum(stable_rates * scale, 1.0), uniform)
    step, entered = 0, before
    cand_e, cand_n = np.zeros((PODS, ticks)), np.zeros((PODS, ticks))
    stab_e, stab_n = errors_stable.copy(), totals.copy()
    for tick in range(before, ticks):
        # the candidate serves pods [0, pods) in this tick, the stable the rest
        pods = STEPS[step][0]
        cand_e[:pods, tick] = errors_candidate[:pods, tick]
        cand_n[:pods, tick] = totals[:pods, tick]
        stab_e[:pods, tick] = 0.0
        stab_n[:pods, tick] = 0.0
        now = tick + 1
        candidate = _counts(cand_e[:, :now], cand_n[:, :now], before, with_sources, "c")
        stable = _counts(stab_e[:, :now], stab_n[:, :now], before, with_sources, "s", history=True)
        verdict = JUDGE.counts(ERRORS, candidate, stable, BUDGET).verdict
        elapsed = (now - before) * TICK
        if verdict is Verdict.FAIL:
            return Rollout(Verdict.FAIL, elapsed)
        in_step = (now - entered) * TICK
        if verdict is Verdict.PASS and in_step >= max(STEPS[step][1], world.min_step):
            if step == len(STEPS) - 1:
                return Rollout(Verdict.PASS, elapsed)
            step, entered = step + 1, now
    return Rollout(Verdict.INCONCLUSIVE, world.deadline)


def _binomial(n: np.ndarray, p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Binomial(n, p) by a normal approximation at the uniform ``u`` (Poisson when small)."""
    mean = n * p
    sd = np.sqrt(np.maximum(mean * (1.0 - p), 1e-12))
    z = statistics.NormalDist()
    zs = np.vectorize(z.inv_cdf)(np.clip(u, 1e-9, 1 - 1e-9))
    approx = np.clip(np.round(mean + sd * zs), 0, n)
    small = mean < 20
    if small.any():
        # inverse Poisson CDF for small means (exact enough for rare errors)
        out = approx.copy()
        for idx in zip(*np.nonzero(small), strict=True):
            lam, target = mean[idx], u[idx]
            k, term = 0, np.exp(-lam)
            cdf = term
            while cdf < target and k < n[idx]:
                k += 1
                term *= lam / k
                cdf += term
            out[idx] = k
        return out
    return approx


def _counts(
    events: np.ndarray,
    totals: np.ndarray,
    before: int,
    with_sources: bool,
    prefix: str,
    *,
    history: bool = False,
) -> Counts:
    since_e = float(events[:, before:].sum())
    since_n = float(totals[:, before:].sum())
    if not with_sources:
        return Counts(since_e, since_n)
    first = 0 if history else before
    sources = tuple(
        Source(
            f"{prefix}{pod}",
            tuple(float(x) for x in np.concatenate([np.zeros(first), events[pod, first:]])),
            tuple(float(x) for x in np.concatenate([np.zeros(first), totals[pod, first:]])),
        )
        for pod in range(PODS)
        if totals[pod, first:].sum() > 0
    )
    return Counts(since_e, since_n, sources)


def tally(world: World, rollouts: int, seed: int, with_sources: bool) -> list[Rollout]:
    """``rollouts`` seeded rollouts of one world."""
    return [rollout(world, seed * 100_003 + i, with_sources) for i in range(rollouts)]


def _row(args: tuple[World, int, int, bool]) -> list[Rollout]:
    return tally(*args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rates", default="20,100,500")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    worlds: list[tuple[str, World]] = []
    for rate in rates:
        worlds += [
            ("A/A, bursts cv 3 / 30 s", World(rate, cv=3.0, burst=30.0)),
            ("A/A, bursts cv 2 / 10 s", World(rate, cv=2.0, burst=10.0)),
            ("A/A, independent", World(rate)),
            ("errors 1% -> 4%, independent", World(rate, candidate_errors=0.04)),
        ]
    jobs = [(w, args.rollouts, args.seed, s) for _, w in worlds for s in (False, True)]
    with multiprocessing.Pool(args.jobs) as pool:
        results = pool.map(_row, jobs)
    print(f"{args.rollouts} seeded rollouts per cell; Fail = rolled back by the error-rate SLO")
    today, sources = "today: fail  pass  med s", "sources: fail  pass  med s"
    print(f"{'req/s':>6} {'world':32} {today:>26} {sources:>28}")
    for i, (name, world) in enumerate(worlds):
        cells = []
        for outcome in results[2 * i : 2 * i + 2]:
            fails = sum(r.verdict is Verdict.FAIL for r in outcome) / len(outcome)
            passes = sum(r.verdict is Verdict.PASS for r in outcome) / len(outcome)
            decided = [r.seconds for r in outcome if r.verdict is not Verdict.INCONCLUSIVE]
            med = statistics.median(decided) if decided else float("nan")
            cells.append(f"{fails:6.1%} {passes:6.1%} {med:6.0f}")
        print(f"{world.rate:6g} {name:32} {cells[0]:>26} {cells[1]:>28}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
