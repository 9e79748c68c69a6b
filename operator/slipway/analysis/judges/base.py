"""What every judge takes and gives: SLO specs, evidence, budgets, judgements.

Measuring (a metric provider) and deciding (a judge) are kept apart so the
same counts can be judged two ways, and so a benchmark can drive a judge with
synthetic counts exactly as the operator drives it with Prometheus' counts.
Everything here is plain data: no I/O, no Kubernetes, no PromQL.

Two kinds of evidence cover the typed SLOs:

- ``Counts`` for ratio SLOs (error rate, accuracy from labelled feedback):
  events counted (errors, correct predictions) out of a total;
- ``Histogram`` for latency SLOs: Prometheus' cumulative ``_bucket`` counts.

A judge says which counts it wants (``Judge.scope``): the threshold judge
reads one window, the sequential judge everything since the candidate started.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal, Protocol

from slipway.api.phases import Verdict

Better = Literal["lower", "higher"]
"""Which way a ratio improves: ``lower`` for error rates, ``higher`` for accuracy."""


class Scope(StrEnum):
    """Which counts a judge wants from the provider."""

    WINDOW = "window"
    """Increase over the SLO's window, ending now."""

    SINCE_START = "sinceStart"
    """Increase since the candidate started taking traffic (both versions)."""


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How much worse than the stable the candidate may be.

    Lower-is-better ratios and latency: limit = stable * (1 + relative) + absolute.
    Higher-is-better ratios: limit = stable * (1 - relative) - absolute.
    Both zero means "no worse at all", which only an effect of zero can pass
    with certainty: give a tolerance you could live with.
    """

    relative: float = 0.0
    absolute: float = 0.0

    def __post_init__(self) -> None:
        if not (self.relative >= 0 and self.absolute >= 0):
            raise ValueError(f"tolerances must be >= 0, got {self.relative}, {self.absolute}")

    def describe(self, better: Better = "lower", unit: str = "") -> str:
        """``stable*1.5``, ``stable-0.02``, ``stable*1.1+0.05s``."""
        sign = 1.0 if better == "lower" else -1.0
        text = "stable"
        if self.relative:
            text += f"*{1.0 + sign * self.relative:.4g}"
        if self.absolute:
            text += f"{'+' if sign > 0 else '-'}{self.absolute:.4g}{unit}"
        return text


@dataclass(frozen=True, slots=True)
class CountSLO:
    """A ratio SLO: ``events / total`` per version, e.g. errors / requests.

    ``tolerance`` compares with the stable (None: no comparison); ``bound`` is
    an absolute guard rail on the candidate (a ceiling when lower is better, a
    floor when higher is better). At least one of them is required.
    """

    name: str
    better: Better
    tolerance: Tolerance | None = None
    bound: float | None = None
    metric: str = "ratio"

    def __post_init__(self) -> None:
        if self.tolerance is None and self.bound is None:
            raise ValueError(f"SLO {self.name}: needs a tolerance, a bound or both")
        if self.bound is not None and not 0.0 <= self.bound <= 1.0:
            raise ValueError(f"SLO {self.name}: a ratio bound must be in [0, 1]")


@dataclass(frozen=True, slots=True)
class LatencySLO:
    """A latency quantile SLO judged on histogram buckets.

    ``tolerance``: the candidate's quantile may be at most
    ``stable * (1 + relative) + absolute`` seconds. ``max_seconds``: an
    absolute ceiling on the candidate's quantile. ``min_effect``: the smallest
    relative rise of the tail share the sequential judge is asked to tell apart
    (a tolerance finer than the buckets can show is widened to this).
    """

    name: str
    quantile: float
    tolerance: Tolerance | None = None
    max_seconds: float | None = None
    min_effect: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"SLO {self.name}: quantile must be in (0, 1)")
        if self.tolerance is None and self.max_seconds is None:
            raise ValueError(f"SLO {self.name}: needs a tolerance, max_seconds or both")
        if self.min_effect < 0:
            raise ValueError(f"SLO {self.name}: min_effect must be >= 0")

    @property
    def label(self) -> str:
        """``p95``, ``p99.9``."""
        return f"p{self.quantile * 100:.4g}"


@dataclass(frozen=True, slots=True)
class Source:
    """One independent source of requests (a pod): its counts in consecutive steps.

    ``events[i]`` out of ``totals[i]`` happened in step ``i`` (oldest first).
    Every source of both versions handed to one judgement uses the same grid
    of equal steps (step 0 starts at the same moment for all; a step in which
    the pod did not exist is ``0, 0``), so that consecutive steps can be merged
    into longer blocks alike for all. They only measure how much the counts
    vary beyond independent requests; the test itself uses ``Counts.events``
    and ``Counts.total``, which need not equal the sources' sums.
    """

    name: str
    events: tuple[float, ...]
    totals: tuple[float, ...]

    @property
    def problem(self) -> str | None:
        """Why this source cannot be used, or None."""
        if len(self.events) != len(self.totals):
            return f"source {self.name}: {len(self.events)} event steps, {len(self.totals)} totals"
        for e, n in zip(self.events, self.totals, strict=True):
            if not (math.isfinite(e) and math.isfinite(n)) or e < 0 or n < 0:
                return f"source {self.name}: counts must be finite and >= 0"
            if e > n * (1 + 1e-9) + 1e-9:
                return f"source {self.name}: {e:g} events out of only {n:g} in one step"
        return None


@dataclass(frozen=True, slots=True)
class Counts:
    """``events`` out of ``total`` (floats: Prometheus returns floats).

    ``sources``: the same counts per pod and step (see ``Source``), from which
    the sequential judge measures over-dispersion (errors that come in bursts
    on a pod, or differ between pods). Empty: nothing to measure it by, and
    requests are taken as independent trials (the binomial variance).
    """

    events: float
    total: float
    sources: tuple[Source, ...] = ()

    @property
    def problem(self) -> str | None:
        """Why these counts cannot be judged, or None."""
        if not (math.isfinite(self.events) and math.isfinite(self.total)):
            return "counts are not finite numbers"
        if self.events < 0 or self.total < 0:
            return "counts are negative (a counter reset?)"
        if self.events > self.total * (1 + 1e-9) + 1e-9:
            return f"{self.events:g} events out of only {self.total:g}"
        steps = {len(s.totals) for s in self.sources}
        if len(steps) > 1:
            return f"sources cover different numbers of steps: {sorted(steps)}"
        return next((s.problem for s in self.sources if s.problem), None)


@dataclass(frozen=True, slots=True)
class Histogram:
    """Prometheus cumulative buckets: ``cumulative[i]`` observations <= ``bounds[i]``.

    The last bound must be ``+Inf`` (its count is the total); see
    ``histograms.problem`` for the other rules.
    """

    bounds: tuple[float, ...]
    cumulative: tuple[float, ...]

    @classmethod
    def from_buckets(cls, buckets: Mapping[float, float]) -> Histogram:
        """From ``{le: count}``, e.g. one Prometheus answer of ``sum by (le)``."""
        ordered = sorted(buckets.items())
        return cls(tuple(le for le, _ in ordered), tuple(count for _, count in ordered))


@dataclass(frozen=True, slots=True)
class SLOBudget:
    """Error rates one SLO may spend, each over every look at it."""

    fail_alpha: float
    pass_alpha: float


@dataclass(frozen=True, slots=True)
class ErrorBudget:
    """The false-decision budget of one release.

    ``false_rollback``: the chance of rolling back a candidate that is within
    tolerance on every SLO, for the whole release: all SLOs, all their checks,
    every look. It is split evenly over the SLOs (Bonferroni) and, inside an
    SLO, over its checks (vs stable, guard rail). Looks need no share: the
    sequential test's boundary holds however often it is read.

    ``false_promotion``: the chance that an SLO passes although the candidate
    is worse than its tolerance. Not split: promotion needs every SLO to pass,
    so one regressed SLO is let through only if its own test errs.

    Tiers may tighten both (critical models: 0.01).
    """

    false_rollback: float = 0.05
    false_promotion: float = 0.05

    def __post_init__(self) -> None:
        for value in (self.false_rollback, self.false_promotion):
            if not 0.0 < value < 0.5:
                raise ValueError(f"error rates must be in (0, 0.5), got {value}")

    def per_slo(self, slo_count: int) -> SLOBudget:
        """Each of ``slo_count`` SLOs' share."""
        return SLOBudget(self.false_rollback / max(slo_count, 1), self.false_promotion)


@dataclass(frozen=True, slots=True)
class Check:
    """One hypothesis about one SLO, with the numbers behind its verdict.

    Values are in the metric's units (a ratio, or the share of requests slower
    than a bucket bound). ``lower``/``upper`` bound the candidate's value
    (the sequential judge: confidence bounds valid at every look, folding in
    the stable's uncertainty; the threshold judge: None). ``samples_needed``
    is the candidate sample count by which the check is decided with 90 %
    probability if the candidate is as good as the stable (once its estimate
    is past the limit: if that estimate holds); None when no count would do.
    """

    name: str
    verdict: Verdict
    metric: str
    candidate: float | None
    stable: float | None
    limit: float | None
    lower: float | None
    upper: float | None
    samples: float
    stable_samples: float | None
    samples_needed: float | None
    message: str


@dataclass(frozen=True, slots=True)
class Judgement:
    """One SLO's verdict at one look: the worst check decides."""

    slo: str
    judge: str
    verdict: Verdict
    message: str
    checks: tuple[Check, ...]

    @property
    def deciding(self) -> Check | None:
        """The check that set the verdict (the first failing, else the neediest)."""
        for check in self.checks:
            if check.verdict is self.verdict and self.verdict is Verdict.FAIL:
                return check
        open_ = [c for c in self.checks if c.verdict is Verdict.INCONCLUSIVE]
        if open_:
            return max(
                open_, key=lambda c: math.inf if c.samples_needed is None else c.samples_needed
            )
        return self.checks[0] if self.checks else None

    def status(self) -> dict[str, str | float | None]:
        """The fields status and ``slipway describe`` show (camelCase, JSON-safe)."""
        check = self.deciding
        out: dict[str, str | float | None] = {
            "slo": self.slo,
            "judge": self.judge,
            "verdict": self.verdict.value,
            "reason": self.message,
        }
        if check is not None:
            out |= {
                "metric": check.metric,
                "candidate": _finite(check.candidate),
                "stable": _finite(check.stable),
                "limit": _finite(check.limit),
                "lower": _finite(check.lower),
                "upper": _finite(check.upper),
                "samples": _finite(check.samples),
                "stableSamples": _finite(check.stable_samples),
                "samplesNeeded": _finite(check.samples_needed),
            }
        return out


def _finite(number: float | None) -> float | None:
    return number if number is not None and math.isfinite(number) else None


class Judge(Protocol):
    """What the operator (and the benchmark) need from a judge."""

    @property
    def name(self) -> str:
        """The registry name, shown in status."""
        ...

    @property
    def scope(self) -> Scope:
        """Which counts to fetch for it."""
        ...

    def counts(
        self, slo: CountSLO, candidate: Counts, stable: Counts | None, budget: SLOBudget
    ) -> Judgement:
        """Judge a ratio SLO; never raises for bad or missing data."""
        ...

    def latency(
        self,
        slo: LatencySLO,
        candidate: Histogram,
        stable: Histogram | None,
        budget: SLOBudget,
    ) -> Judgement:
        """Judge a latency SLO; never raises for bad or missing data."""
        ...


def combine(checks: tuple[Check, ...]) -> Verdict:
    """Any check failing fails; all passing passes; else Inconclusive."""
    verdicts = {c.verdict for c in checks}
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    if verdicts == {Verdict.PASS}:
        return Verdict.PASS
    return Verdict.INCONCLUSIVE


def judgement(slo: str, judge: str, checks: tuple[Check, ...]) -> Judgement:
    """A Judgement whose verdict and message come from its checks."""
    verdict = combine(checks)
    shown = [c for c in checks if c.verdict is verdict] or list(checks)
    message = "; ".join(c.message for c in shown)
    return Judgement(slo, judge, verdict, f"SLO {slo}: {message}", checks)


def no_evidence(slo: str, judge: str, metric: str, why: str, samples: float = 0.0) -> Judgement:
    """An Inconclusive judgement that has nothing to measure."""
    check = Check(
        name="data",
        verdict=Verdict.INCONCLUSIVE,
        metric=metric,
        candidate=None,
        stable=None,
        limit=None,
        lower=None,
        upper=None,
        samples=samples,
        stable_samples=None,
        samples_needed=None,
        message=why,
    )
    return judgement(slo, judge, (check,))


def pct(share: float | None) -> str:
    """A share as people read it: ``1.23%``, ``0.0412%``."""
    if share is None or not math.isfinite(share):
        return "n/a"
    value = share * 100
    return f"{value:.3g}%" if abs(value) < 10 else f"{value:.1f}%"


def count(number: float | None) -> str:
    """A sample count: ``1,234``."""
    if number is None or not math.isfinite(number):
        return "n/a"
    return f"{round(number):,}"


UNBOUNDED_SAMPLES: Final = 1e9
"""Sample counts beyond this are reported as "no count would do" (None)."""
