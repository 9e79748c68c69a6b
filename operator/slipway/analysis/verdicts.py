"""Turn measured numbers into verdicts a person can check.

Pure functions only: the numbers come in, a verdict with the value, baseline,
threshold text and a reason sentence comes out, so every rule is unit-tested
and every promotion or rollback can be explained from status alone.

Rules, in order:

1. No data (``None`` or NaN) for the candidate: Inconclusive.
2. The SLO has a samples query and fewer than ``min_samples`` were counted
   (no data counts as zero): Inconclusive. Too little traffic neither passes
   nor fails a release, however good or bad its one value looks.
3. Any bound that can be evaluated is violated: Fail. A candidate over an
   absolute ``max`` fails even when the stable baseline is missing.
4. A relative bound with no baseline (no stable release, no data, NaN):
   Inconclusive.
5. Otherwise: Pass.

Bounds are inclusive (``value <= max`` passes), with a 1e-9 relative tolerance
so float rounding of ``stable*1.10`` never flips a value sitting on the limit.

Relative bounds. ``ratio``: limit = stable ± |stable| * r (the ``|stable|``
keeps the direction right for a negative metric). ``absolute``: limit =
stable ± r. A stable value of 0 in ratio mode is not special-cased: the limit
is then 0 itself, because any rise above zero is an unbounded ratio. A
candidate at 0 passes; any candidate above 0 fails ``maxIncrease``. Metrics
that sit at zero (error counts) want ``relative: absolute`` or an absolute
``max`` instead.

Non-finite numbers never reach status (Kubernetes' JSON has no NaN or
Infinity): they are reported in the reason and stored as ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from slipway.api.models import SLO, SLOResult, SLOThreshold
from slipway.api.phases import Verdict

_REL_TOL = 1e-9
Op = Literal["<=", ">="]


@dataclass(frozen=True, slots=True)
class Bound:
    """One side of a threshold: ``value <op> limit``; limit None when it needs a baseline."""

    op: Op
    limit: float | None
    text: str

    def holds(self, value: float) -> bool:
        """True when ``value`` is on the right side of the limit (inclusive)."""
        assert self.limit is not None
        if math.isclose(value, self.limit, rel_tol=_REL_TOL, abs_tol=0.0):
            return True
        return value <= self.limit if self.op == "<=" else value >= self.limit


def fmt(number: float) -> str:
    """A number as people read it: ``0.25``, ``1200``, ``1.5e-05``, ``+Inf``."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return f"{number:.6g}"


def _fmt_limit(number: float) -> str:
    """A computed limit, with fixed precision when that loses nothing visible."""
    if number == 0 or 1e-3 <= abs(number) < 1e6:
        return f"{number:.4f}"
    return f"{number:.4g}"


def _fmt_factor(factor: float) -> str:
    """``1.10`` for 1.1, ``1.125`` for 1.125: two decimals at least, more when needed."""
    text = f"{factor:.2f}"
    return text if math.isclose(float(text), factor) else f"{factor:.6g}"


def is_relative(threshold: SLOThreshold) -> bool:
    """True when the threshold compares with the stable release (needs a baseline)."""
    return threshold.max_increase is not None or threshold.max_decrease is not None


def bounds(threshold: SLOThreshold, baseline: float | None) -> list[Bound]:
    """The threshold's bounds, with relative limits resolved against ``baseline``."""
    result: list[Bound] = []
    if threshold.min is not None:
        result.append(Bound(">=", threshold.min, f">= {fmt(threshold.min)}"))
    if threshold.max is not None:
        result.append(Bound("<=", threshold.max, f"<= {fmt(threshold.max)}"))
    base = baseline if baseline is not None and math.isfinite(baseline) else None
    ratio = threshold.relative == "ratio"
    sides: tuple[tuple[Op, float | None], ...] = (
        ("<=", threshold.max_increase),
        (">=", threshold.max_decrease),
    )
    for op, amount in sides:
        if amount is None:
            continue
        sign = 1.0 if op == "<=" else -1.0
        if ratio:
            expr = f"stable*{_fmt_factor(1.0 + sign * amount)}"
            limit = None if base is None else base + sign * abs(base) * amount
        else:
            expr = f"stable{'+' if sign > 0 else '-'}{fmt(amount)}"
            limit = None if base is None else base + sign * amount
        shown = "no baseline" if limit is None else _fmt_limit(limit)
        result.append(Bound(op, limit, f"{op} {expr} ({shown})"))
    return result


def describe_threshold(threshold: SLOThreshold, baseline: float | None = None) -> str:
    """The threshold as status shows it, e.g. ``>= 0.9 and <= stable*1.10 (0.2200)``."""
    return " and ".join(b.text for b in bounds(threshold, baseline))


def _finite(number: float | None) -> float | None:
    return number if number is not None and math.isfinite(number) else None


def _missing(number: float | None) -> bool:
    return number is None or math.isnan(number)


def inconclusive(
    slo: SLO, reason: str, *, value: float | None = None, baseline: float | None = None
) -> SLOResult:
    """An Inconclusive result for ``slo`` with ``reason`` (prefixed with the SLO's name)."""
    return SLOResult(
        slo=slo.name,
        verdict=Verdict.INCONCLUSIVE,
        value=_finite(value),
        baseline=_finite(baseline),
        threshold=describe_threshold(slo.threshold, baseline),
        reason=f"SLO {slo.name}: {reason}",
    )


def judge(
    slo: SLO,
    value: float | None,
    baseline: float | None,
    samples: float | None,
    min_samples: int,
    *,
    baseline_error: str | None = None,
) -> SLOResult:
    """Judge one SLO's measured ``value`` (see the module docstring for the rules).

    ``baseline`` is the stable release's value of the same query (None when the
    threshold is absolute or there is none); ``samples`` the samples query's
    value (ignored when the SLO has no samples query or ``min_samples`` is 0);
    ``baseline_error`` says why the baseline is missing, for the reason.
    """
    if _missing(value):
        what = "NaN" if value is not None else "no sample"
        return inconclusive(slo, f"no data (the query returned {what})", baseline=baseline)
    assert value is not None
    if slo.samples_query and min_samples > 0:
        counted = 0.0 if samples is None or math.isnan(samples) else samples
        if counted < min_samples:
            return inconclusive(
                slo,
                f"{fmt(counted)} samples in {slo.window}, fewer than the {min_samples} required",
                value=value,
                baseline=baseline,
            )
    all_bounds = bounds(slo.threshold, baseline)
    threshold = " and ".join(b.text for b in all_bounds)
    known = [b for b in all_bounds if b.limit is not None]
    broken = [b for b in known if not b.holds(value)]
    stable = ""
    if is_relative(slo.threshold) and baseline is not None and not math.isnan(baseline):
        stable = f" (stable {fmt(baseline)})"
    if not broken and math.isinf(value):
        # An infinite value may fail a bound (+Inf latency is too slow) but never passes
        # one: +Inf accuracy is a division by zero, not a good model.
        verdict = Verdict.INCONCLUSIVE
        reason = f"{fmt(value)} is not a measurement it can pass on"
    elif broken:
        verdict = Verdict.FAIL
        reason = f"{fmt(value)} violates {' and '.join(b.text for b in broken)}{stable}"
    elif len(known) < len(all_bounds):
        verdict = Verdict.INCONCLUSIVE
        why = baseline_error or "no data for the stable release"
        unknown = " and ".join(b.text for b in all_bounds if b.limit is None)
        reason = f"{fmt(value)} cannot be checked against {unknown}: {why}"
    else:
        verdict = Verdict.PASS
        reason = f"{fmt(value)} meets {threshold}{stable}"
    return SLOResult(
        slo=slo.name,
        verdict=verdict,
        value=_finite(value),
        baseline=_finite(baseline),
        samples=_finite(samples) if slo.samples_query else None,
        threshold=threshold,
        reason=f"SLO {slo.name}: {reason}",
    )


def combine(results: Iterable[SLOResult]) -> Verdict:
    """One tick's verdict: any Fail fails; else any Inconclusive; else Pass.

    No SLOs at all gives Pass, only because there is nothing to measure: a
    deployment without SLOs is promoted on its steps' pauses alone, which is
    what its owner declared. (Policy may still require SLOs; that is not
    this function's call.)
    """
    verdicts = {r.verdict for r in results}
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    if Verdict.INCONCLUSIVE in verdicts:
        return Verdict.INCONCLUSIVE
    return Verdict.PASS


def explain(results: Iterable[SLOResult]) -> str:
    """The reasons behind a tick's verdict: the failing SLOs, else the inconclusive ones.

    Meant for a RolledBack or Paused message, e.g.
    ``SLO latency-p99: 0.31 violates <= 0.25``.
    """
    listed = list(results)
    verdict = combine(listed)
    if not listed:
        return "no SLOs to analyse"
    if verdict is Verdict.PASS:
        return f"all {len(listed)} SLOs passed"
    return "; ".join(r.reason for r in listed if r.verdict is verdict)
