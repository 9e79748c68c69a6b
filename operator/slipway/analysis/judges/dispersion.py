"""How much more counts vary than independent requests would: a variance factor per version.

Why. The sequential judge's ratio tests take each request as an independent
trial (binomial variance). Real errors come in bursts: a pod with a bad cache
or a flaky dependency errs a lot for a while, then little. The total then
varies far more than the binomial says, most of all for a candidate on one
pod, and identical models get rolled back (issue 13: 7-13 % at 20-500 req/s
against a 5 % budget). Requests on one pod close in time share a state;
pods, and stretches of time far apart, do not.

What. ``Counts.sources`` hold each pod's counts per step. Consecutive steps of
one pod are merged into blocks of 1, 2, 4, ... steps, up to one block per pod
over the whole range. At each block length L, within each version, the blocks'
Pearson statistic ``X2 = sum (e_b - n_b q)^2 / (n_b q (1-q))`` measures the
extra variance: with a pod's rate varying (squared coefficient of variation
k' relative to ``q(1-q)``) a block's count has variance
``n_b q (1-q) (1 + k' n_b)``, so ``E[X2] ~ df + k' W`` (``W = sum n_b (1 - n_b/N)``).
Each version's since-start total then has the variance factor
``1 + k' sum n_b^2 / N`` over its own blocks. A block length shorter than the
bursts underestimates k' (a burst spans blocks), one longer than them does
not; so the factor taken is the largest over the block lengths.

Conservative, and cheap when nothing is wrong:

- a block length counts only when it shows over-dispersion beyond doubt
  (``X2`` above the 99.9 % quantile of its null distribution, a scaled
  chi-square whose variance includes the small-count term), so independent
  errors rarely widen a test (power kept);
- when it does, k' is taken at an upper confidence bound (``CONFIDENCE``) of
  the mean dispersion (a scaled chi-square with Satterthwaite's degrees of
  freedom): few pods and few steps give a weak estimate and a wide bound;
- the factor is floored at 1.

Both versions' blocks estimate one k' (the serving environment's burstiness,
residuals taken from each version's own rate, so a real difference between
versions is not mistaken for noise); the stable's sources may reach back
before the candidate started (steps with no candidate requests), which is
what measures bursts while the candidate still runs on one pod. Only steps
from the candidate's first request on count toward the totals' factors.

Assumes: pods are independent of each other; a pod's state changes within
the range (bursts shorter than about a quarter of the range); a burst that
hits every pod at once (a shared dependency) moves both versions alike and is
not over-dispersion between them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from slipway.analysis.judges.base import Counts, Source

PRETEST_Z: Final = 3.09
"""A block length counts when X2 is above its null distribution's 99.9 % quantile (this z)."""

CONFIDENCE: Final = 0.75
"""Upper confidence level of the mean dispersion once a block length counts.

Measured (e2e/bench_bursts.py, 900 bursty identical-version rollouts at 20-500 req/s):
no false rollback at 0.5, 0.75 or 0.9; identical models passed within 10 minutes under
moderate bursts in 74-91 %, 57-73 % and 48-53 % of them. 0.75 keeps a margin for worlds
the benchmark does not simulate."""

_Z_CONFIDENCE: Final = 0.6745  # the normal quantile of CONFIDENCE


@dataclass(frozen=True, slots=True)
class Dispersion:
    """Variance factors (>= 1) for the candidate's and the stable's since-start totals.

    ``steps``: the block length (in steps) that set the larger factor, None
    when no block length showed over-dispersion; ``measured``: whether there
    were per-pod counts at all (False: requests taken as independent).
    """

    candidate: float = 1.0
    stable: float = 1.0
    steps: int | None = None
    measured: bool = False

    def describe(self) -> str:
        """A clause for a check's message, or '' when nothing was widened."""
        if not self.measured:
            return ""
        if self.steps is None:
            return ""
        return (
            f"; bursts: variance x{self.candidate:.3g} candidate, x{self.stable:.3g} stable"
            f" (blocks of {self.steps} steps)"
        )


def chi2_quantile(df: float, z: float) -> float:
    """Wilson-Hilferty's chi-square quantile at the probability whose normal quantile is ``z``."""
    c = 2.0 / (9.0 * df)
    return df * max(1.0 - c + z * math.sqrt(c), 1e-3) ** 3


_Prefix = tuple[list[float], list[float]]


def _prefix(source: Source) -> _Prefix:
    """Running sums of a source's events and totals (index j: the first j steps)."""
    return [0.0, *itertools.accumulate(source.events)], [0.0, *itertools.accumulate(source.totals)]


def _blocks(
    sources: Sequence[_Prefix], start: int, stop: int, length: int
) -> list[tuple[float, float]]:
    """(events, total) of each source's blocks of ``length`` steps in ``[start, stop)``."""
    out: list[tuple[float, float]] = []
    for events, totals in sources:
        for j in range(start, stop, length):
            end = min(j + length, stop)
            n = totals[end] - totals[j]
            if n > 0:
                out.append((max(events[end] - events[j], 0.0), n))
    return out


@dataclass(frozen=True, slots=True)
class _Level:
    x2: float = 0.0
    df: float = 0.0
    null_var: float = 0.0
    weight: float = 0.0


def _level(blocks: list[tuple[float, float]]) -> _Level:
    """One version's Pearson statistic, its degrees of freedom, null variance and W."""
    total = sum(n for _, n in blocks)
    events = sum(e for e, _ in blocks)
    if len(blocks) < 2 or total <= 0:
        return _Level()
    q = events / total
    if not 0.0 < q < 1.0:
        return _Level()
    pq = q * (1.0 - q)
    x2 = sum((e - n * q) ** 2 / (n * pq) for e, n in blocks)
    # Var of (e - nq)^2 / (n pq) for a binomial: 2 (1 - 1/n) + (1 - 6 pq) / (n pq).
    null_var = sum(2.0 * (1.0 - 1.0 / max(n, 1.0)) + (1.0 - 6.0 * pq) / (n * pq) for _, n in blocks)
    df = len(blocks) - 1.0
    null_var *= df / len(blocks)
    weight = sum(n * (1.0 - n / total) for _, n in blocks)
    return _Level(x2, df, max(null_var, 1e-9), weight)


def _spread(blocks: list[tuple[float, float]]) -> float:
    """``sum n_b^2 / N``: how much one unit of k' adds to a total's variance factor."""
    total = sum(n for _, n in blocks)
    return sum(n * n for _, n in blocks) / total if total > 0 else 0.0


def dispersion(candidate: Counts, stable: Counts | None) -> Dispersion:
    """The variance factors of both versions' totals from their sources (see the module)."""
    if not candidate.sources and not (stable is not None and stable.sources):
        return Dispersion()
    steps = max(len(s.totals) for s in (*candidate.sources, *(stable.sources if stable else ())))
    start = next(
        (j for j in range(steps) if any(s.totals[j] > 0 for s in candidate.sources)),
        0,
    )
    mine = [_prefix(s) for s in candidate.sources]
    theirs = [_prefix(s) for s in stable.sources] if stable is not None else []
    phi_c = phi_s = 1.0
    set_by: int | None = None
    length = 1
    while True:
        levels = [_level(_blocks(group, 0, steps, length)) for group in (mine, theirs) if group]
        x2 = sum(v.x2 for v in levels)
        df = sum(v.df for v in levels)
        null_var = sum(v.null_var for v in levels)
        weight = sum(v.weight for v in levels)
        df_eff = min(df, 2.0 * df * df / null_var) if df >= 1 else 0.0
        # X2 * df_eff / df is about chi-square with df_eff degrees of freedom when requests
        # are independent (Satterthwaite: the small-count term widens it).
        if df_eff > 0 and weight > 0 and x2 * df_eff / df > chi2_quantile(df_eff, PRETEST_Z):
            mean_upper = x2 / chi2_quantile(df_eff, -_Z_CONFIDENCE) * (df_eff / df)
            extra = max(mean_upper - 1.0, 0.0) * df / weight
            here_c = 1.0 + extra * _spread(_blocks(mine, start, steps, length))
            here_s = 1.0 + extra * _spread(_blocks(theirs, start, steps, length))
            if here_c > phi_c or here_s > phi_s:
                set_by = length
            phi_c, phi_s = max(phi_c, here_c), max(phi_s, here_s)
        if length >= steps:
            break
        length *= 2
    return Dispersion(phi_c, phi_s, set_by, True)
