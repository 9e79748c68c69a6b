"""The threshold judge: one point estimate per window against fixed limits.

Kept because it is simple to explain and it is what raw-PromQL SLOs can be
judged by, and as the benchmark's baseline. It compares the candidate's value
over one window with the limits (absolute, or relative to the stable over the
same window) and nothing else: no confidence, no memory across looks.

What it no longer does wrong:

- a ratio is not judged on fewer samples than its limit needs: with a 2 %
  ceiling, one error in 20 requests is 5 %, so a single event would decide.
  The minimum is ``min_events / limit`` samples (limit in "bad" terms: the
  error-rate ceiling, one minus an accuracy floor, the tail share beyond a
  latency quantile), for the candidate and for a stable it is compared with;
- failures are meant to be counted once per window, not once per tick:
  ``independent_failures`` counts failed looks whose windows do not overlap,
  so one unlucky stretch is one failure, not six.

``min_samples`` keeps the old fixed minimum (``AnalysisSettings.minSamples``);
with ``min_events=0`` it applies today's rule (``verdicts.judge``) to ratio and latency SLOs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

from slipway.analysis.judges import histograms
from slipway.analysis.judges.base import (
    Check,
    Counts,
    CountSLO,
    Histogram,
    Judgement,
    LatencySLO,
    Scope,
    SLOBudget,
    count,
    judgement,
    no_evidence,
    pct,
)
from slipway.api.phases import Verdict

NAME: Final = "threshold"
DEFAULT_MIN_EVENTS: Final = 3.0
_REL_TOL = 1e-9  # a value sitting on its limit passes despite float rounding


def minimum_samples(bad_limit: float, min_events: float, min_samples: int = 0) -> float:
    """Samples a window needs before a limit of ``bad_limit`` (a share of bad events) is judged.

    At that many samples the limit corresponds to ``min_events`` bad events,
    so no single event can carry the value across it. A limit of zero can
    never be judged by counting (inf), unless ``min_events`` is 0.
    """
    if min_events <= 0:
        return float(min_samples)
    if bad_limit <= 0:
        return math.inf
    return max(float(min_samples), math.ceil(min_events / bad_limit - 1e-9))


def independent_failures(failed_at: Iterable[float], window_seconds: float) -> int:
    """Failed looks that share no data: each counted one starts a window's length after the last.

    ``failed_at`` are the looks' times in seconds (any order). Looks closer
    together than the window judged overlapping data, so they count once.
    """
    counted = 0
    last = -math.inf
    for at in sorted(failed_at):
        if at - last >= window_seconds:
            counted += 1
            last = at
    return counted


def _holds(value: float, limit: float, lower_is_better: bool) -> bool:
    if math.isclose(value, limit, rel_tol=_REL_TOL, abs_tol=0.0):
        return True
    return value <= limit if lower_is_better else value >= limit


class ThresholdJudge:
    """Point estimates over one window against the SLO's limits."""

    name: Final = NAME
    scope: Final = Scope.WINDOW

    def __init__(self, min_events: float = DEFAULT_MIN_EVENTS, min_samples: int = 0) -> None:
        if min_events < 0 or min_samples < 0:
            raise ValueError("min_events and min_samples must be >= 0")
        self.min_events = min_events
        self.min_samples = min_samples

    def counts(
        self, slo: CountSLO, candidate: Counts, stable: Counts | None, budget: SLOBudget
    ) -> Judgement:
        """Judge a ratio SLO on one window's counts (``budget`` is not used)."""
        del budget
        why = candidate.problem or (stable.problem if stable is not None else None)
        if why:
            return no_evidence(slo.name, NAME, slo.metric, why)
        if candidate.total <= 0:
            return no_evidence(slo.name, NAME, slo.metric, "no data in the window")
        lower = slo.better == "lower"
        value = candidate.events / candidate.total
        checks: list[Check] = []
        if slo.tolerance is not None:
            tol = slo.tolerance
            if stable is None or stable.total <= 0:
                checks.append(self._open(slo.metric, value, candidate.total, "no stable data"))
            else:
                base = stable.events / stable.total
                limit = (
                    base * (1 + tol.relative) + tol.absolute
                    if lower
                    else base * (1 - tol.relative) - tol.absolute
                )
                checks.append(
                    self._compare(
                        slo,
                        "vs stable",
                        value,
                        candidate.total,
                        base,
                        stable.total,
                        limit,
                        f"{tol.describe(slo.better)} = {pct(limit)}",
                    )
                )
        if slo.bound is not None:
            word = "<=" if lower else ">="
            checks.append(
                self._compare(
                    slo,
                    "guard",
                    value,
                    candidate.total,
                    None,
                    None,
                    slo.bound,
                    f"{word} {pct(slo.bound)}",
                )
            )
        return judgement(slo.name, NAME, tuple(checks))

    def _compare(
        self,
        slo: CountSLO,
        name: str,
        value: float,
        samples: float,
        stable: float | None,
        stable_samples: float | None,
        limit: float,
        limit_text: str,
    ) -> Check:
        lower = slo.better == "lower"
        needed = minimum_samples(limit if lower else 1.0 - limit, self.min_events, self.min_samples)
        shown = f"{slo.metric} {pct(value)}" + (
            f" vs stable {pct(stable)}" if stable is not None else ""
        )
        # The stable's value is as noisy as the candidate's: it needs the same minimum,
        # except in the old behaviour (no minimum derived), which never asked.
        short = samples < needed or (
            self.min_events > 0 and stable_samples is not None and stable_samples < needed
        )
        if short:
            verdict = Verdict.INCONCLUSIVE
            message = (
                f"{shown}: {count(samples)} samples in the window"
                + (f" ({count(stable_samples)} stable)" if stable_samples is not None else "")
                + f", fewer than the {count(needed)} that {limit_text} needs"
            )
        elif _holds(value, limit, lower):
            verdict = Verdict.PASS
            message = f"{shown} meets {limit_text}"
        else:
            verdict = Verdict.FAIL
            message = f"{shown} violates {limit_text}"
        return Check(
            name,
            verdict,
            slo.metric,
            value,
            stable,
            limit,
            None,
            None,
            samples,
            stable_samples,
            needed,
            message,
        )

    def latency(
        self,
        slo: LatencySLO,
        candidate: Histogram,
        stable: Histogram | None,
        budget: SLOBudget,
    ) -> Judgement:
        """Judge a latency SLO on one window's buckets, as ``histogram_quantile`` reads them."""
        del budget
        metric = f"{slo.label} latency"
        why = histograms.problem(candidate) or (
            histograms.problem(stable) if stable is not None else None
        )
        if why:
            return no_evidence(slo.name, NAME, metric, why)
        samples = histograms.total(candidate)
        value = histograms.quantile(histograms.cleaned(candidate), slo.quantile)
        if math.isnan(value):
            return no_evidence(slo.name, NAME, metric, "no data in the window")
        needed = minimum_samples(1.0 - slo.quantile, self.min_events, self.min_samples)
        checks: list[Check] = []
        if slo.tolerance is not None:
            tol = slo.tolerance
            base = (
                histograms.quantile(histograms.cleaned(stable), slo.quantile)
                if stable is not None
                else math.nan
            )
            stable_samples = histograms.total(stable) if stable is not None else None
            if math.isnan(base) or stable_samples is None:
                checks.append(self._open(metric, value, samples, "no stable data"))
            else:
                limit = base * (1 + tol.relative) + tol.absolute
                text = f"{tol.describe('lower', 's')} = {limit:.4g}s"
                checks.append(
                    self._latency(
                        metric,
                        "vs stable",
                        value,
                        samples,
                        base,
                        stable_samples,
                        limit,
                        text,
                        needed,
                    )
                )
        if slo.max_seconds is not None:
            text = f"<= {slo.max_seconds:g}s"
            checks.append(
                self._latency(
                    metric, "guard", value, samples, None, None, slo.max_seconds, text, needed
                )
            )
        return judgement(slo.name, NAME, tuple(checks))

    def _latency(
        self,
        metric: str,
        name: str,
        value: float,
        samples: float,
        stable: float | None,
        stable_samples: float | None,
        limit: float,
        limit_text: str,
        needed: float,
    ) -> Check:
        shown = f"{metric} {value:.4g}s" + (f" vs stable {stable:.4g}s" if stable else "")
        short = samples < needed or (
            self.min_events > 0 and stable_samples is not None and stable_samples < needed
        )
        if short:
            verdict = Verdict.INCONCLUSIVE
            message = (
                f"{shown}: {count(samples)} requests in the window, fewer than the"
                f" {count(needed)} its quantile needs"
            )
        elif _holds(value, limit, True):
            verdict, message = Verdict.PASS, f"{shown} meets {limit_text}"
        else:
            verdict, message = Verdict.FAIL, f"{shown} violates {limit_text}"
        return Check(
            name,
            verdict,
            metric,
            value,
            stable,
            limit,
            None,
            None,
            samples,
            stable_samples,
            needed,
            message,
        )

    @staticmethod
    def _open(metric: str, value: float, samples: float, why: str) -> Check:
        return Check(
            "vs stable",
            Verdict.INCONCLUSIVE,
            metric,
            value,
            None,
            None,
            None,
            None,
            samples,
            None,
            None,
            why,
        )
