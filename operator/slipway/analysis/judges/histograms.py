"""Reading Prometheus cumulative histograms without inventing precision.

Latency SLOs speak of quantiles, but a histogram only knows how many
requests fell at or under each bucket bound. Both judges read it here:

- ``quantile`` is Prometheus' own ``histogram_quantile`` (linear inside the
  bucket), so the threshold judge agrees with what a dashboard shows;
- ``tail_share_at`` interpolates the share of requests slower than a time
  between bounds as a power law (straight in log-log), which is how latency
  tails fall; linear interpolation inside a wide bucket (0.1 s to 0.25 s)
  overstates the tail near its top by half, which would hide a real slowdown.

Counts arrive as floats (Prometheus) and may carry rounding noise; a bucket
that falls by more than half a request is refused, smaller dips are smoothed.
"""

from __future__ import annotations

import math
from itertools import pairwise

from slipway.analysis.judges.base import Histogram

_SLACK = 0.5  # requests: a larger fall between buckets is not rounding noise


def problem(histogram: Histogram) -> str | None:
    """Why ``histogram`` cannot be read, or None."""
    bounds, counts = histogram.bounds, histogram.cumulative
    if len(bounds) != len(counts):
        return f"{len(bounds)} bucket bounds but {len(counts)} counts"
    if not bounds or bounds[-1] != math.inf:
        return "no +Inf bucket, so the total is unknown"
    if any(math.isnan(b) for b in bounds) or any(b >= c for b, c in pairwise(bounds)):
        return "bucket bounds are not strictly increasing"
    if any(not math.isfinite(c) or c < 0 for c in counts):
        return "bucket counts are negative or not finite"
    if any(later < earlier - _SLACK for earlier, later in pairwise(counts)):
        return "bucket counts decrease (a counter reset, or buckets scraped apart)"
    return None


def cleaned(histogram: Histogram) -> Histogram:
    """``histogram`` with rounding dips removed (each count at least the one before)."""
    running = 0.0
    counts: list[float] = []
    for value in histogram.cumulative:
        running = max(running, value)
        counts.append(running)
    return Histogram(histogram.bounds, tuple(counts))


def on_bounds(histogram: Histogram, bounds: tuple[float, ...]) -> Histogram:
    """``histogram`` read at ``bounds`` only (each must be one of its bounds)."""
    index = {b: i for i, b in enumerate(histogram.bounds)}
    return Histogram(bounds, tuple(histogram.cumulative[index[b]] for b in bounds))


def common(first: Histogram, second: Histogram) -> tuple[Histogram, Histogram]:
    """Both histograms on the bounds they share (a changed bucket layout still compares)."""
    if first.bounds == second.bounds:
        return first, second
    shared = tuple(sorted(set(first.bounds) & set(second.bounds)))
    return on_bounds(first, shared), on_bounds(second, shared)


def total(histogram: Histogram) -> float:
    """Observations in all buckets (the +Inf bucket)."""
    return histogram.cumulative[-1] if histogram.cumulative else 0.0


def slower_than(histogram: Histogram, index: int) -> float:
    """Observations above ``bounds[index]``."""
    return total(histogram) - histogram.cumulative[index]


def quantile(histogram: Histogram, q: float) -> float:
    """Prometheus' ``histogram_quantile(q, ...)`` for one histogram; NaN when empty."""
    n = total(histogram)
    if n <= 0:
        return math.nan
    rank = q * n
    bounds, counts = histogram.bounds, histogram.cumulative
    for i, (bound, cum) in enumerate(zip(bounds, counts, strict=True)):
        if cum >= rank:
            if bound == math.inf:
                return bounds[-2] if len(bounds) > 1 else math.nan
            lower = bounds[i - 1] if i > 0 else 0.0
            below = counts[i - 1] if i > 0 else 0.0
            if i == 0 and bound <= 0:
                return bound
            inside = cum - below
            return bound if inside <= 0 else lower + (bound - lower) * (rank - below) / inside
    return math.nan


def tail_share_at(histogram: Histogram, seconds: float) -> float:
    """Share of observations slower than ``seconds``, interpolated between bounds.

    Between two bounds with shares t1 > t2 > 0 the share falls as a power law;
    below the first bound, or where a share is zero, it falls linearly (as
    Prometheus assumes). Past the last finite bound: that bound's share.
    """
    n = total(histogram)
    if n <= 0:
        return math.nan
    lower, lower_tail = 0.0, 1.0
    for bound, cum in zip(histogram.bounds, histogram.cumulative, strict=True):
        tail = (n - cum) / n
        if bound == math.inf:
            return lower_tail
        if seconds <= bound:
            if seconds <= lower:
                return lower_tail
            if lower > 0 and tail > 0 and lower_tail > tail:
                reach = math.log(seconds / lower) / math.log(bound / lower)
                return lower_tail * math.pow(tail / lower_tail, reach)
            return lower_tail + (tail - lower_tail) * (seconds - lower) / (bound - lower)
        lower, lower_tail = bound, tail
    return lower_tail


def difference(later: Histogram, earlier: Histogram) -> Histogram:
    """Observations between two readings of the same cumulative counters."""
    return Histogram(
        later.bounds,
        tuple(a - b for a, b in zip(later.cumulative, earlier.cumulative, strict=True)),
    )
