"""The sequential judge: decide only when the evidence is enough, at any look.

Why. A canary is looked at every few seconds and a noisy point estimate
crosses any fixed threshold sooner or later; an identical model then gets
rolled back. This judge reads the counts accumulated since the candidate
started and asks one question per check, with error rates that hold however
often it is asked, whenever it stops, and however the traffic split moved:

- Fail when the candidate is worse than the tolerance, beyond doubt;
- Pass when a regression larger than the tolerance is ruled out
  (non-inferiority), never merely because nothing failed;
- otherwise Inconclusive, with the samples needed to decide.

How (ratio SLOs). Work in "bad" shares (errors; wrong predictions for
accuracy). Every check is a linear limit on the candidate's bad share q_c:
``q_c <= a*q_s + b`` (vs stable: a = 1 + relative, b = absolute, or the mirror
image for higher-is-better; guard rail: a = 0, b = the bound). The margin
``m = q_c - a*q_s - b`` is estimated from the counts, its variance taken at
the restricted maximum-likelihood rates on the boundary m = 0 (the
Farrington-Manning score test, good with few events where the Wald variance
is zero and overconfident). The estimate, scaled by its information 1/V, is
close to a Brownian motion in information time on the boundary (each
version's requests are i.i.d. whatever the split, so changing steps mostly
change how fast information grows; with bursts, each version's variance is
multiplied by its measured over-dispersion, see below). A normal-mixture
boundary (Robbins; the mixture SPRT of Johari et al., "Always valid
inference", 2017) on that motion is crossed with probability at most alpha
over all time: the confidence bound
``m_hat +- sqrt(V (V + tau^2) / tau^2 * (2 log(1/alpha') + log(1 + tau^2 / V)))``.
Each side is a one-sided test at its own alpha (alpha' corrects the two-sided
mixture for one side). tau, the effect size the boundary is tuned to, is the
tolerance itself in the metric's units: that is where decisions happen.

How (latency). Quantiles are not counts, but "the candidate's p95 is at most
1.1x the stable's" says that no more requests are slower than a time B than
the stable has slower than B/1.1. B is the bucket bound nearest the stable's
target quantile; the stable's share above B/1.1 is interpolated as a power
law (``histograms.tail_share_at``), which turns the tolerance into a relative
tolerance on the share above B, widened to at least ``min_effect``. Then it
is the ratio test above on "slower than B". An absolute ``max_seconds``
ceiling is a one-sample check on the share above it (failing only on a bound
at or above the ceiling, passing only on one at or below it).

What each test assumes.

- Ratio vs stable and ratio guard rail (error rate, accuracy): with per-pod
  counts (``Counts.sources``), that pods are independent of each other and a
  pod's state (its error rate) changes within the range read: bursts on a
  pod, and pods that differ, widen the test by the over-dispersion measured
  (``dispersion``: a variance factor per version, taken at an upper
  confidence bound, only where the counts show it beyond doubt, floored at 1;
  the stable's pods read 10 minutes back measure it while the candidate
  still has one pod). A burst on every pod at once (a shared dependency) is
  the same for both versions and cancels in the comparison, not in the guard
  rail. Without per-pod counts: every request an independent trial (the
  binomial variance) -- bursts then roll back identical models.
- Latency (vs stable and ceiling): every request an independent trial; no
  per-pod histograms are read, so bursts of slow requests are not allowed for.
- Both: the stable's and the candidate's rates steady during the rollout
  apart from those bursts.

``samples_needed`` is a plan, not a promise: the sample count by which a
check is decided with 90 % probability if the candidate is as good as the
stable (once its estimate is past the limit: if that estimate holds).

Budget (``ErrorBudget``, a policy parameter tiers may tighten). A release
may be rolled back while within tolerance with probability at most
``false_rollback`` (default 5 %): split evenly over its SLOs, and inside an
SLO over its checks (vs stable, guard rail); looks take no share, the
boundary already holds at every one. An SLO passes a candidate that is
worse than its tolerance with probability at most ``false_promotion``
(default 5 %), not split: promotion needs every SLO to pass.

What it costs. The boundary is wider than a fixed-sample test's (about 1.5x
to 2x the samples at the same error rates): the price of reading it at every
tick. What it buys: a false rollback rate that is a parameter, not a function
of the analysis interval, and a number of samples a person can wait for.

Approximations, stated: the test is asymptotic (normal) in the counts, the
score variance and a mixture scale read from the data keep small counts
conservative (the benchmark and the unit tests measure it); rates are taken
as steady during a rollout (a traffic mix that shifts with the split would
bias both judges alike). A variance factor estimated at each look and
plugged into the mixture boundary keeps the boundary's guarantee only as
far as the factor is not below the truth: hence its upper confidence bound
(e2e/bench_bursts.py measures the false-rollback rate it leaves).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from slipway.analysis.judges import histograms
from slipway.analysis.judges.base import (
    UNBOUNDED_SAMPLES,
    Check,
    Counts,
    CountSLO,
    Histogram,
    Judgement,
    LatencySLO,
    Scope,
    SLOBudget,
    Tolerance,
    count,
    judgement,
    no_evidence,
    pct,
)
from slipway.analysis.judges.dispersion import Dispersion, dispersion
from slipway.api.phases import Verdict

NAME: Final = "sequential"
PLANNING_PROBABILITY: Final = 0.9
"""``samples_needed``: decided by then with this chance, for a candidate as good as the stable."""


@lru_cache(maxsize=64)
def one_sided_level(alpha: float) -> float:
    """The two-sided mixture level whose upper boundary alone is crossed with at most ``alpha``.

    Where the two-sided normal mixture reaches ``1/alpha'`` on the upper side,
    the one-sided (half-normal) mixture martingale is at least
    ``2 * Phi(sqrt(2 log(1/alpha'))) / alpha'``; Ville's inequality does the rest.
    """
    edge = math.sqrt(2.0 * math.log(1.0 / (2.0 * alpha)))
    return 2.0 * alpha * 0.5 * (1.0 + math.erf(edge / math.sqrt(2.0)))


def half_width(variance: float, tau: float, alpha: float) -> float:
    """Distance from the estimate to the one-sided boundary, valid at every look."""
    ratio = tau * tau / variance  # tau^2 times the information
    spend = 2.0 * math.log(1.0 / one_sided_level(alpha))
    return math.sqrt(variance * (1.0 + 1.0 / ratio) * (spend + math.log1p(ratio)))


def restricted_rates(
    bad_c: float, n_c: float, bad_s: float, n_s: float, a: float, b: float
) -> tuple[float, float]:
    """Maximum-likelihood bad shares (q_c, q_s) on the boundary ``q_c = a*q_s + b``.

    The log-likelihood is concave in q_s, so its derivative falls: Newton's
    method inside a bisection bracket. ``a = 0`` is the one-sample case.
    """
    if a <= 0.0 or n_s <= 0:
        return b, (bad_s / n_s if n_s > 0 else 0.0)
    good_c, good_s = n_c - bad_c, n_s - bad_s
    low, high = 0.0, min(1.0, (1.0 - b) / a)

    def slope(s: float) -> tuple[float, float]:
        """The log-likelihood's first and second derivative at q_s = s."""
        qc = a * s + b
        d = d2 = 0.0
        if bad_c > 0:
            d += a * bad_c / qc
            d2 -= a * a * bad_c / (qc * qc)
        if good_c > 0:
            d -= a * good_c / (1.0 - qc)
            d2 -= a * a * good_c / ((1.0 - qc) * (1.0 - qc))
        if bad_s > 0:
            d += bad_s / s
            d2 -= bad_s / (s * s)
        if good_s > 0:
            d -= good_s / (1.0 - s)
            d2 -= good_s / ((1.0 - s) * (1.0 - s))
        return d, d2

    # An end is a candidate for the maximum only where the derivative stays finite.
    if bad_s <= 0 and (bad_c <= 0 or b > 0) and slope(low)[0] <= 0:
        return b, low
    top_finite = not (good_s > 0 and high >= 1.0) and not (good_c > 0 and a * high + b >= 1.0)
    if top_finite and slope(high)[0] >= 0:
        return a * high + b, high
    s = 0.5 * (low + high)
    guess = (bad_s + bad_c / a) / (n_s + n_c / a)
    if low < guess < high:
        s = guess
    for _ in range(100):
        d, d2 = slope(s)
        if d > 0:
            low = s
        else:
            high = s
        nxt = s - d / d2 if d2 < 0 else 0.5 * (low + high)
        if not low < nxt < high:
            nxt = 0.5 * (low + high)
        if abs(nxt - s) <= 1e-15 + 1e-9 * s:
            s = nxt
            break
        s = nxt
    return a * s + b, s


@dataclass(frozen=True, slots=True)
class Decision:
    """One linear check ``q_c <= a*q_s + b`` on bad shares, decided.

    ``low``/``high`` bound the candidate's bad share (stable's spread folded
    in): Fail iff ``low`` is above the limit, Pass iff ``high`` is below it.
    """

    verdict: Verdict
    share: float
    limit: float
    low: float | None
    high: float | None
    needed: float | None


def decide(
    bad_c: float,
    n_c: float,
    bad_s: float,
    n_s: float,
    a: float,
    b: float,
    tau: float,
    fail_alpha: float,
    pass_alpha: float,
    phi_c: float = 1.0,
    phi_s: float = 1.0,
    stable_per_candidate: float | None = None,
) -> Decision:
    """Test ``q_c <= a*q_s + b`` on counts of bad events (``a = 0``: the stable is unused).

    Fail and Pass are one-sided tests of the boundary, at ``fail_alpha`` and
    ``pass_alpha`` over all looks. No information yet (no events on either
    side, so no spread to measure): Inconclusive. ``phi_c``/``phi_s`` multiply
    each version's binomial variance (over-dispersion, see ``dispersion``).
    """
    share = bad_c / n_c
    limit = (a * bad_s / n_s if a > 0 else 0.0) + b
    qc, qs = restricted_rates(bad_c, n_c, bad_s, n_s, a, b)
    variance = phi_c * qc * (1.0 - qc) / n_c + (
        a * a * phi_s * qs * (1.0 - qs) / n_s if a > 0 else 0.0
    )
    if not (variance > 0 and tau > 0):
        return Decision(Verdict.INCONCLUSIVE, share, limit, None, None, None)
    low = share - half_width(variance, tau, fail_alpha)
    high = share + half_width(variance, tau, pass_alpha)
    if low > limit:
        return Decision(Verdict.FAIL, share, limit, low, high, n_c)
    if high < limit:
        return Decision(Verdict.PASS, share, limit, low, high, n_c)
    needed = samples_needed(
        bad_c,
        n_c,
        bad_s,
        n_s,
        a,
        b,
        tau,
        fail_alpha,
        pass_alpha,
        phi_c,
        phi_s,
        stable_per_candidate,
    )
    return Decision(Verdict.INCONCLUSIVE, share, limit, low, high, needed)


def samples_needed(
    bad_c: float,
    n_c: float,
    bad_s: float,
    n_s: float,
    a: float,
    b: float,
    tau: float,
    fail_alpha: float,
    pass_alpha: float,
    phi_c: float = 1.0,
    phi_s: float = 1.0,
    stable_per_candidate: float | None = None,
) -> float | None:
    """Candidate samples by which the check is decided with 90 % probability, planned for a
    candidate as good as the stable (or, once its estimate is past the limit, as bad as that).

    The plan: the counts so far stay as they are; the stable gets
    ``stable_per_candidate`` samples per future candidate sample (the recent
    split; default: the split so far); future requests of both
    versions err at one rate q (vs stable: both versions' counts pooled, its
    uncertainty integrated over; one-sample checks: the candidate's own
    share). When the candidate's estimate is above the limit, the candidate's
    future requests err at its own estimate instead (the stable's at its own),
    taken as exact.
    The check decides at N when the estimate at N is past the boundary there;
    a decision before N only helps, so the figure errs long. None: not within
    a billion samples.
    """
    compared = a > 0 and n_s > 0
    limit = (a * bad_s / n_s if compared else 0.0) + b
    leaning_fail = bad_c / n_c > limit
    if compared and not leaning_fail:
        pooled_bad, pooled_n, phi = bad_c + bad_s, n_c + n_s, max(phi_c, phi_s)
    else:
        pooled_bad, pooled_n, phi = bad_c, n_c, phi_c
    q0 = _clamped_share(pooled_bad, pooled_n)
    # A regression is planned at its estimate: its uncertainty would reach back over the limit.
    spread = 0.0 if leaning_fail else math.sqrt(q0 * (1.0 - q0) * phi / max(pooled_n, 1.0))
    rates = [(w, min(max(q0 + x * spread, 1e-9), 1.0 - 1e-9)) for x, w in _HERMITE]
    stable_rate = _clamped_share(bad_s, n_s) if compared else 0.0
    per_candidate = 0.0
    if compared:
        per_candidate = (
            n_s / max(n_c, 1.0) if stable_per_candidate is None else stable_per_candidate
        )

    def decided(samples: float) -> float:
        """The chance the estimate is past either boundary at ``samples``."""
        stable_n = n_s + (samples - n_c) * per_candidate
        chance = 0.0
        for weight, q in rates:
            qs = stable_rate if leaning_fail else q
            mean = (bad_c + (samples - n_c) * q) / samples - b
            spread_now = phi_c * (samples - n_c) * q * (1.0 - q) / (samples * samples)
            at_limit = min(max(a * qs + b, 1e-9), 1.0 - 1e-9)
            judged = phi_c * at_limit * (1.0 - at_limit) / samples
            if compared:
                pq = qs * (1.0 - qs)
                mean -= a * (bad_s + (stable_n - n_s) * qs) / stable_n
                spread_now += a * a * phi_s * (stable_n - n_s) * pq / (stable_n * stable_n)
                judged += a * a * phi_s * pq / stable_n
            sd = math.sqrt(spread_now)
            passed = _normal_cdf((-half_width(judged, tau, pass_alpha) - mean) / sd)
            failed = _normal_cdf((mean - half_width(judged, tau, fail_alpha)) / sd)
            chance += weight * min(1.0, passed + failed)
        return chance

    if not tau > 0 or decided(UNBOUNDED_SAMPLES) < PLANNING_PROBABILITY:
        return None
    low = math.floor(n_c) + 1.0
    if decided(low) >= PLANNING_PROBABILITY:
        return low  # the next look may decide
    high = low
    while decided(high) < PLANNING_PROBABILITY:  # a coarse geometric scan, then bisection
        low, high = high, min(high * 1.25, UNBOUNDED_SAMPLES)
    while high - low > max(1.0, 0.005 * low):
        mid = 0.5 * (low + high)
        low, high = (low, mid) if decided(mid) >= PLANNING_PROBABILITY else (mid, high)
    return float(math.ceil(high))


_HERMITE: Final = (
    (0.0, 8.0 / 15.0),
    (1.355626179974266, 0.2220759220056126),
    (-1.355626179974266, 0.2220759220056126),
    (2.856970013872806, 0.011257411327720691),
    (-2.856970013872806, 0.011257411327720691),
)
"""Five-point Gauss-Hermite nodes and weights for a standard normal variable."""


def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


RECENT_STEPS: Final = 6
"""The split of the last this many steps of the per-pod counts plans the future's."""


def recent_split(candidate: Counts, stable: Counts | None) -> float | None:
    """Stable samples per candidate sample over the last ``RECENT_STEPS`` steps of the sources.

    The split since the start mixes in the time before the candidate served
    (or smaller steps); the plan wants the split going on. None without sources.
    """
    if stable is None or not candidate.sources or not stable.sources:
        return None
    steps = len(candidate.sources[0].totals)
    first = next(
        (j for j in range(steps) if any(s.totals[j] > 0 for s in candidate.sources)), steps
    )
    begin = max(first, steps - RECENT_STEPS)
    mine = sum(sum(s.totals[begin:]) for s in candidate.sources)
    theirs = sum(sum(s.totals[begin:]) for s in stable.sources)
    return theirs / mine if mine > 0 else None


def _clamped_share(bad: float, total: float) -> float:
    return min(max(bad, 0.5), max(total - 0.5, 0.5)) / max(total, 1.0)


def _confidence(alpha: float) -> str:
    return f"{(1.0 - alpha) * 100:.4g}%"


def _wording(
    decision: Decision,
    show: Callable[[float], float],
    *,
    what: str,
    stable: float | None,
    limit_text: str,
    samples_text: str,
    fail_alpha: float,
    pass_alpha: float,
) -> str:
    """The sentence behind a check's verdict, in the SLO's own terms."""
    base = f"{what} {pct(show(decision.share))}"
    if stable is not None:
        base += f" vs stable {pct(stable)}"
    limit = f"{pct(show(decision.limit))} ({limit_text})"
    up = show(1.0) > show(0.0)  # bad shares shown as they are (error rate), else mirrored
    if decision.verdict is Verdict.FAIL and decision.low is not None:
        side = "above" if up else "below"
        bound = f"at {'least' if up else 'most'} {pct(show(decision.low))}"
        sure = f"with {_confidence(fail_alpha)} confidence"
        return f"{base}: {side} {limit} {sure} ({bound}; {samples_text})"
    if decision.verdict is Verdict.PASS and decision.high is not None:
        bound = f"at {'most' if up else 'least'} {pct(show(decision.high))}"
        sure = f"with {_confidence(pass_alpha)} confidence"
        return f"{base}: within {limit} {sure} ({bound}; {samples_text})"
    if decision.low is None:
        return f"{base}, limit {limit}: no events yet to measure the spread by ({samples_text})"
    if decision.needed is None:
        need = "the estimate sits on the limit: no sample count is sure to decide"
    else:
        need = (
            f"about {count(decision.needed)} candidate samples needed to decide"
            f" ({PLANNING_PROBABILITY:.0%} sure if the candidate is as good as the stable)"
        )
    return f"{base}, limit {limit}: not decided yet ({samples_text}; {need})"


def _check(
    name: str,
    metric: str,
    decision: Decision,
    show: Callable[[float], float],
    *,
    stable: float | None,
    n_c: float,
    n_s: float | None,
    message: str,
) -> Check:
    bounds = [show(x) for x in (decision.low, decision.high) if x is not None]
    return Check(
        name=name,
        verdict=decision.verdict,
        metric=metric,
        candidate=show(decision.share),
        stable=stable,
        limit=show(decision.limit),
        lower=min(bounds) if bounds else None,
        upper=max(bounds) if bounds else None,
        samples=n_c,
        stable_samples=n_s,
        samples_needed=decision.needed,
        message=message,
    )


def _open(
    name: str, metric: str, n_c: float, why: str, verdict: Verdict = Verdict.INCONCLUSIVE
) -> Check:
    """A check decided without a test: nothing to test yet, or a limit that allows anything."""
    needed = n_c if verdict is Verdict.PASS else None
    return Check(name, verdict, metric, None, None, None, None, None, n_c, None, needed, why)


def _samples(n_c: float, n_s: float | None, unit: str = "samples") -> str:
    text = f"{count(n_c)} candidate {unit}"
    return text if n_s is None else f"{text}, {count(n_s)} stable"


def _identity(share: float) -> float:
    return share


def _mirror(share: float) -> float:
    return 1.0 - share


class SequentialJudge:
    """Anytime-valid tests on counts since the candidate started (the default judge)."""

    name: Final = NAME
    scope: Final = Scope.SINCE_START

    def counts(
        self, slo: CountSLO, candidate: Counts, stable: Counts | None, budget: SLOBudget
    ) -> Judgement:
        """Judge a ratio SLO: vs the stable and against its guard rail, each at its alpha."""
        why = candidate.problem or (stable.problem if stable is not None else None)
        if why:
            return no_evidence(slo.name, NAME, slo.metric, why)
        if candidate.total <= 0:
            return no_evidence(slo.name, NAME, slo.metric, "no candidate samples yet")
        fail_alpha = budget.fail_alpha / (
            int(slo.tolerance is not None) + int(slo.bound is not None)
        )
        spread = dispersion(candidate, stable)
        checks: list[Check] = []
        if slo.tolerance is not None:
            checks.append(
                self._versus_stable(
                    slo, slo.tolerance, candidate, stable, fail_alpha, budget, spread
                )
            )
        if slo.bound is not None:
            checks.append(self._guard(slo, slo.bound, candidate, fail_alpha, budget, spread))
        return judgement(slo.name, NAME, tuple(checks))

    @staticmethod
    def _versus_stable(
        slo: CountSLO,
        tolerance: Tolerance,
        candidate: Counts,
        stable: Counts | None,
        fail_alpha: float,
        budget: SLOBudget,
        spread: Dispersion,
    ) -> Check:
        """``q_c <= a*q_s + b`` on bad shares (see the module).

        Assumes: requests independent within each pod and step block beyond the
        over-dispersion ``spread`` measured from the per-pod counts (none given:
        every request independent); both versions' rates steady apart from that.
        """
        n_c = candidate.total
        if stable is None or stable.total <= 0:
            return _open("vs stable", slo.metric, n_c, "no stable samples to compare with")
        lower = slo.better == "lower"
        show = _identity if lower else _mirror
        n_s = stable.total
        bad_c = candidate.events if lower else n_c - candidate.events
        bad_s = stable.events if lower else n_s - stable.events
        # accuracy_c >= accuracy_s*(1-r) - d  <=>  wrong_c <= (1-r)*wrong_s + r + d
        if lower:
            a, b = 1.0 + tolerance.relative, tolerance.absolute
        else:
            a, b = 1.0 - tolerance.relative, tolerance.relative + tolerance.absolute
        text = tolerance.describe(slo.better)
        if b >= 1.0:
            return _open("vs stable", slo.metric, n_c, f"{text} allows any value", Verdict.PASS)
        # tau: the tolerance in the metric's units at the stable's rate (smoothed, so it is
        # positive before the stable's first event); "no worse at all" falls back to half
        # the pooled rate.
        tau = b + (a - 1.0) * (bad_s + 0.5) / (n_s + 1.0)
        if tau <= 0:
            tau = 0.5 * (bad_c + bad_s + 0.5) / (n_c + n_s + 1.0)
        decision = decide(
            bad_c,
            n_c,
            bad_s,
            n_s,
            a,
            b,
            tau,
            fail_alpha,
            budget.pass_alpha,
            spread.candidate,
            spread.stable,
            recent_split(candidate, stable),
        )
        message = _wording(
            decision,
            show,
            what=slo.metric,
            stable=show(bad_s / n_s),
            limit_text=text,
            samples_text=_samples(n_c, n_s) + spread.describe(),
            fail_alpha=fail_alpha,
            pass_alpha=budget.pass_alpha,
        )
        return _check(
            "vs stable",
            slo.metric,
            decision,
            show,
            stable=show(bad_s / n_s),
            n_c=n_c,
            n_s=n_s,
            message=message,
        )

    @staticmethod
    def _guard(
        slo: CountSLO,
        bound: float,
        candidate: Counts,
        fail_alpha: float,
        budget: SLOBudget,
        spread: Dispersion,
    ) -> Check:
        """``q_c <= bound`` on the candidate's bad share alone (one-sample).

        Assumes what the comparison does, for the candidate only: a burst on
        every pod at once is not cancelled by a stable here, but it is measured
        as over-dispersion over time when the counts show it.
        """
        lower = slo.better == "lower"
        show = _identity if lower else _mirror
        n_c = candidate.total
        bad_c = candidate.events if lower else n_c - candidate.events
        b = bound if lower else 1.0 - bound
        text = f"{'max' if lower else 'min'} {bound:g}"
        if b >= 1.0:
            return _open("guard", slo.metric, n_c, f"{text} allows any value", Verdict.PASS)
        # tau: half the bound, an effect a guard rail is there to catch.
        tau = 0.5 * b if b > 0 else 0.5 * (bad_c + 0.5) / (n_c + 1.0)
        decision = decide(
            bad_c, n_c, 0.0, 0.0, 0.0, b, tau, fail_alpha, budget.pass_alpha, spread.candidate
        )
        message = _wording(
            decision,
            show,
            what=slo.metric,
            stable=None,
            limit_text=text,
            samples_text=_samples(n_c, None) + spread.describe(),
            fail_alpha=fail_alpha,
            pass_alpha=budget.pass_alpha,
        )
        return _check(
            "guard", slo.metric, decision, show, stable=None, n_c=n_c, n_s=None, message=message
        )

    def latency(
        self,
        slo: LatencySLO,
        candidate: Histogram,
        stable: Histogram | None,
        budget: SLOBudget,
    ) -> Judgement:
        """Judge a latency SLO through the share of requests slower than a bucket bound."""
        metric = f"{slo.label} latency"
        why = histograms.problem(candidate) or (
            histograms.problem(stable) if stable is not None else None
        )
        if why:
            return no_evidence(slo.name, NAME, metric, why)
        candidate = histograms.cleaned(candidate)
        n_c = histograms.total(candidate)
        if n_c <= 0:
            return no_evidence(slo.name, NAME, metric, "no candidate requests yet")
        fail_alpha = budget.fail_alpha / (
            int(slo.tolerance is not None) + int(slo.max_seconds is not None)
        )
        checks: list[Check] = []
        if slo.tolerance is not None:
            if stable is None or histograms.total(stable) <= 0:
                checks.append(_open("vs stable", metric, n_c, "no stable requests to compare with"))
            else:
                checks.append(
                    self._latency_versus_stable(
                        slo, candidate, histograms.cleaned(stable), fail_alpha, budget.pass_alpha
                    )
                )
        if slo.max_seconds is not None:
            checks.append(self._latency_ceiling(slo, candidate, fail_alpha, budget.pass_alpha))
        return judgement(slo.name, NAME, tuple(checks))

    def _latency_versus_stable(
        self,
        slo: LatencySLO,
        candidate: Histogram,
        stable: Histogram,
        fail_alpha: float,
        pass_alpha: float,
    ) -> Check:
        """The tail share above a bucket bound vs the stable's (see the module).

        Assumes every request independent: no per-pod histograms are read, so
        bursts of slow requests are not allowed for.
        """
        assert slo.tolerance is not None
        cand, base = histograms.common(candidate, stable)
        n_c, n_s = histograms.total(cand), histograms.total(base)
        index = tail_bucket(base, slo.quantile)
        first_bound = next((b for b in base.bounds[:-1] if b > 0), None)
        if index is None:
            return self._at_resolution(slo, cand, base, fail_alpha, pass_alpha)
        bound = base.bounds[index]
        bad_s = histograms.slower_than(base, index)
        stable_share = bad_s / n_s
        allowed_at = (bound - slo.tolerance.absolute) / (1.0 + slo.tolerance.relative)
        if stable_share > 0.5 or (first_bound is not None and 0 < allowed_at < first_bound):
            # The bound nearest the stable's quantile says nothing here: it is below the
            # stable's median (a latency concentrated inside one bucket), or the tolerance
            # falls below the first bucket and would rest on extrapolation.
            return self._at_resolution(slo, cand, base, fail_alpha, pass_alpha)
        allowed = 1.0 if allowed_at <= 0 else histograms.tail_share_at(base, allowed_at)
        effect = max(allowed / stable_share - 1.0, slo.min_effect)
        bad_c = histograms.slower_than(cand, index)
        decision = decide(
            bad_c, n_c, bad_s, n_s, 1.0 + effect, 0.0, effect * stable_share, fail_alpha, pass_alpha
        )
        metric = f"share slower than {bound:g}s"
        quantiles = (
            f"{slo.label} ~{histograms.quantile(cand, slo.quantile):.3g}s vs stable"
            f" ~{histograms.quantile(base, slo.quantile):.3g}s; {metric}"
        )
        text = _wording(
            decision,
            _identity,
            what=quantiles,
            stable=stable_share,
            limit_text=f"{slo.label} <= {slo.tolerance.describe('lower', 's')}:"
            f" the stable's share above {allowed_at:.3g}s, +{effect:.0%}",
            samples_text=_samples(n_c, n_s, "requests"),
            fail_alpha=fail_alpha,
            pass_alpha=pass_alpha,
        )
        return _check(
            "vs stable",
            metric,
            decision,
            _identity,
            stable=stable_share,
            n_c=n_c,
            n_s=n_s,
            message=text,
        )

    @staticmethod
    def _at_resolution(
        slo: LatencySLO, cand: Histogram, base: Histogram, fail_alpha: float, pass_alpha: float
    ) -> Check:
        """The buckets cannot place the stable's quantile finely enough to compare shares
        near it (every stable request below the first bound, or all of them inside one
        bucket). What they can say: the stable's quantile is at most the bound E of its
        bucket, so the tolerance allows at most E*(1+relative)+absolute. The candidate is
        held to the first bound B at or above that: at most ``1 - quantile`` of its requests
        slower than B (widened by ``min_effect``). Lenient by less than a bucket, never
        strict: a candidate within the tolerance is never failed for the buckets' sake."""
        assert slo.tolerance is not None
        n_c, n_s = histograms.total(cand), histograms.total(base)
        finite = [i for i, b in enumerate(base.bounds[:-1]) if b > 0]
        if not finite:
            return _open("vs stable", f"{slo.label} latency", n_c, "no finite bucket bound")
        need = slo.quantile * n_s
        edge = next((base.bounds[i] for i in finite if base.cumulative[i] >= need), None)
        if edge is None:
            return _open(
                "vs stable",
                f"{slo.label} latency",
                n_c,
                "the stable's quantile is beyond the last finite bucket bound",
            )
        ceiling = edge * (1.0 + slo.tolerance.relative) + slo.tolerance.absolute
        index = next((i for i in finite if base.bounds[i] >= ceiling * (1 - 1e-9)), None)
        if index is None:
            return _open(
                "vs stable",
                f"{slo.label} latency",
                n_c,
                f"no finite bucket bound at or above {ceiling:.3g}s to hold the candidate to",
            )
        bound = base.bounds[index]
        target = 1.0 - slo.quantile
        effect = max(slo.min_effect, 0.1)
        bad_c = histograms.slower_than(cand, index)
        limit = target * (1.0 + effect)
        decision = decide(bad_c, n_c, 0.0, 0.0, 0.0, limit, effect * target, fail_alpha, pass_alpha)
        metric = f"share slower than {bound:g}s"
        text = _wording(
            decision,
            _identity,
            what=f"{slo.label} ~{histograms.quantile(cand, slo.quantile):.3g}s; {metric}",
            stable=histograms.slower_than(base, index) / n_s if n_s else 0.0,
            limit_text=f"{slo.label} <= {bound:g}s: the stable's {slo.label} is at most"
            f" {edge:g}s, and {slo.tolerance.describe('lower', 's')} at most {ceiling:.3g}s"
            " (the buckets resolve no finer)",
            samples_text=_samples(n_c, n_s, "requests"),
            fail_alpha=fail_alpha,
            pass_alpha=pass_alpha,
        )
        stable = histograms.slower_than(base, index) / n_s if n_s else 0.0
        return _check(
            "vs stable", metric, decision, _identity, stable=stable, n_c=n_c, n_s=n_s, message=text
        )

    def _latency_ceiling(
        self, slo: LatencySLO, candidate: Histogram, fail_alpha: float, pass_alpha: float
    ) -> Check:
        """``quantile <= max_seconds``: fail on a bound at or above it, pass on one at or below.

        Assumes every request independent (no per-pod histograms are read)."""
        assert slo.max_seconds is not None
        n_c = histograms.total(candidate)
        finite = candidate.bounds[:-1]
        allowed = 1.0 - slo.quantile
        above = next((i for i, b in enumerate(finite) if b >= slo.max_seconds), None)
        below = max((i for i, b in enumerate(finite) if b <= slo.max_seconds), default=None)
        label = (
            f"{slo.label} ~{histograms.quantile(candidate, slo.quantile):.3g}s; share slower than"
        )
        limit_text = f"{slo.label} <= {slo.max_seconds:g}s"
        samples_text = _samples(n_c, None, "requests")
        if above is not None:
            bad = histograms.slower_than(candidate, above)
            decision = decide(
                bad, n_c, 0.0, 0.0, 0.0, allowed, 0.5 * allowed, fail_alpha, pass_alpha
            )
            if decision.verdict is Verdict.FAIL or above == below:
                metric = f"share slower than {finite[above]:g}s"
                text = _wording(
                    decision,
                    _identity,
                    what=f"{label} {finite[above]:g}s",
                    stable=None,
                    limit_text=limit_text,
                    samples_text=samples_text,
                    fail_alpha=fail_alpha,
                    pass_alpha=pass_alpha,
                )
                return _check(
                    "guard",
                    metric,
                    decision,
                    _identity,
                    stable=None,
                    n_c=n_c,
                    n_s=None,
                    message=text,
                )
        if below is None:
            return _open(
                "guard",
                f"{slo.label} latency",
                n_c,
                f"{limit_text} lies below the first bucket bound: it can never pass",
            )
        bad = histograms.slower_than(candidate, below)
        decision = decide(bad, n_c, 0.0, 0.0, 0.0, allowed, 0.5 * allowed, fail_alpha, pass_alpha)
        if decision.verdict is Verdict.FAIL:  # above the bound below the ceiling proves nothing
            decision = Decision(
                Verdict.INCONCLUSIVE,
                decision.share,
                decision.limit,
                decision.low,
                decision.high,
                None,
            )
        text = _wording(
            decision,
            _identity,
            what=f"{label} {finite[below]:g}s",
            stable=None,
            limit_text=limit_text,
            samples_text=samples_text,
            fail_alpha=fail_alpha,
            pass_alpha=pass_alpha,
        )
        return _check(
            "guard",
            f"share slower than {finite[below]:g}s",
            decision,
            _identity,
            stable=None,
            n_c=n_c,
            n_s=None,
            message=text,
        )


def tail_bucket(histogram: Histogram, quantile: float) -> int | None:
    """The finite bound whose share of slower requests is nearest ``1 - quantile`` (by ratio)."""
    n = histograms.total(histogram)
    target = 1.0 - quantile
    best: tuple[float, int] | None = None
    for i, bound in enumerate(histogram.bounds[:-1]):
        share = histograms.slower_than(histogram, i) / n
        if share > 0 and bound > 0:
            distance = abs(math.log(share / target))
            if best is None or distance < best[0]:
                best = (distance, i)
    return None if best is None else best[1]
