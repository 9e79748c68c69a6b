"""PromQL for the counts the judges read, built here so nobody hand-writes ratios.

A typed SLO names counters (requests and the errors among them, a histogram,
good and total predictions); these functions turn them into queries for one
release over one range: the SLO's window (threshold judge) or everything
since the candidate started (sequential judge, see ``range_since``).

Counts are taken per series as ``max_over_time - min_over_time`` over the
range and then summed, as the example SLOs already do, because:

- ``increase()``/``rate()`` extrapolate each series to the range's edges,
  which skews young series (a fresh candidate) and the ratios built on them;
- summing per-series differences keeps the counts of pods that were scaled
  away during the range (a canary step moves pods between versions), where
  ``sum(now) - sum(at start)`` would go negative.

A pod restart inside the range (a counter reset in one series) loses that
series' counts before the restart: less evidence, never invented evidence.

Per-pod counts (``source_queries``): the same counters summed by pod (and by
scrape ``instance``, which every scraped series has, so a setup without a
``pod`` label still tells targets apart), read at every ``STEP_SECONDS`` of
the range by a subquery, and turned into each pod's counts per step
(``sources_from``). They reach ``LOOKBACK_SECONDS`` further back than the
since-start counts, so the stable's pods show how bursty errors are before
the candidate has more than one pod.

Label values are escaped (``templates.escape_string``), so a release name
cannot change a query; extra matchers (which requests are errors) come from
the ModelDeployment's owner and are checked to be label matchers only.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Final

from slipway.analysis.judges.base import Histogram, Source
from slipway.analysis.templates import escape_string

DEFAULT_REQUESTS: Final = "model_requests_total"
DEFAULT_ERRORS: Final = 'code=~"5.."'
DEFAULT_HISTOGRAM: Final = "model_request_duration_seconds"
DEFAULT_GOOD: Final = "model_predictions_correct_total"
DEFAULT_TOTAL: Final = "model_predictions_total"
"""Metric names of the example model server (examples/model-server)."""

STEP_SECONDS: Final = 10
"""Per-pod counts are read in steps of this many seconds."""
LOOKBACK_SECONDS: Final = 600
"""Per-pod counts reach back this far before the candidate started (the stable's history)."""
SOURCE_LABEL: Final = "slipway_source"
"""The label ``source_queries`` joins ``pod`` and ``instance`` into (one series per pod)."""

_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_MATCHER = r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*'
_MATCHERS = re.compile(rf"^(?:{_MATCHER}(?:,{_MATCHER})*,?\s*)?$")


def check_matchers(matchers: str) -> str:
    """``matchers`` stripped, or ValueError unless it is label matchers only (``a="x",b=~"y"``)."""
    if not _MATCHERS.match(matchers):
        raise ValueError(f"not a list of label matchers: {matchers!r}")
    return matchers.strip().rstrip(",").strip()


def selector(metric: str, labels: Mapping[str, str], matchers: str = "") -> str:
    """``metric{label="value",...,matchers}`` with every value escaped."""
    if not _METRIC.match(metric):
        raise ValueError(f"not a metric name: {metric!r}")
    parts: list[str] = []
    for name, value in sorted(labels.items()):
        if not _LABEL.match(name):
            raise ValueError(f"not a label name: {name!r}")
        parts.append(f'{name}="{escape_string(value)}"')
    extra = check_matchers(matchers)
    if extra:
        parts.append(extra)
    return f"{metric}{{{','.join(parts)}}}"


def range_since(started_at: datetime, now: datetime, scrape_seconds: int = 15) -> int:
    """Seconds of range that reach back to ``started_at``, plus one scrape.

    The extra scrape makes ``min_over_time`` see a sample from before the
    start (the stable's counters at that moment).
    """
    elapsed = (now - started_at).total_seconds()
    return max(1, math.ceil(elapsed)) + scrape_seconds


def increase(series: str, seconds: int, *, by_le: bool = False) -> str:
    """What the counters in ``series`` grew by over the last ``seconds``, summed."""
    if seconds < 1:
        raise ValueError(f"a range needs at least 1 second, got {seconds}")
    grown = f"max_over_time({series}[{seconds}s]) - min_over_time({series}[{seconds}s])"
    return f"sum by (le) ({grown})" if by_le else f"sum({grown})"


def error_rate_queries(
    labels: Mapping[str, str],
    seconds: int,
    requests: str = DEFAULT_REQUESTS,
    errors: str = DEFAULT_ERRORS,
) -> tuple[str, str]:
    """(errors, requests) of one release: ``Counts(events=errors, total=requests)``."""
    return (
        increase(selector(requests, labels, errors), seconds),
        increase(selector(requests, labels), seconds),
    )


def ratio_queries(
    labels: Mapping[str, str],
    seconds: int,
    good: str = DEFAULT_GOOD,
    total: str = DEFAULT_TOTAL,
) -> tuple[str, str]:
    """(good, total) of one release, e.g. correct predictions among labelled ones."""
    return (
        increase(selector(good, labels), seconds),
        increase(selector(total, labels), seconds),
    )


def histogram_query(
    labels: Mapping[str, str], seconds: int, histogram: str = DEFAULT_HISTOGRAM
) -> str:
    """Bucket counts of one release, one series per ``le`` (read with ``histogram_from``)."""
    return increase(selector(f"{histogram}_bucket", labels), seconds, by_le=True)


def histogram_from(samples: Mapping[str, float]) -> Histogram:
    """A Histogram from ``{le label value: count}`` (``"0.25"``, ``"+Inf"``).

    ValueError for an ``le`` that is not a number.
    """
    buckets: dict[float, float] = {}
    for le, value in samples.items():
        try:
            bound = float(le)  # float() reads "+Inf" too
        except ValueError:
            raise ValueError(f"bucket bound le={le!r} is not a number") from None
        buckets[bound] = value
    return Histogram.from_buckets(buckets)


def per_source(series: str, seconds: int, step: int = STEP_SECONDS) -> str:
    """Each pod's counters in ``series``, summed, at every ``step`` of the last ``seconds``.

    An instant query of it answers a range vector: one series per pod (label
    ``SOURCE_LABEL``, ``pod/instance``), its points at multiples of ``step``.
    """
    if seconds < 1 or step < 1:
        raise ValueError(f"a range and a step need at least 1 second, got {seconds}, {step}")
    joined = (
        f'label_join(sum by (pod, instance) ({series}), "{SOURCE_LABEL}", "/", "pod", "instance")'
    )
    return f"{joined}[{seconds}s:{step}s]"


def source_queries(
    events_series: str, total_series: str, seconds: int, step: int = STEP_SECONDS
) -> tuple[str, str]:
    """(events, totals) per pod and step, e.g. errors and requests (``sources_from`` reads them)."""
    return per_source(events_series, seconds, step), per_source(total_series, seconds, step)


Points = tuple[tuple[float, float], ...]


def grid_of(*answers: Mapping[str, Points]) -> tuple[float, ...]:
    """Every time any of the answers has a point at, in order: the steps' edges."""
    return tuple(sorted({t for answer in answers for points in answer.values() for t, _ in points}))


def _steps(points: Points, grid: tuple[float, ...]) -> list[float]:
    """A cumulative counter's growth in each step of ``grid`` (a reset counts from zero)."""
    at = dict(points)
    out: list[float] = []
    for before, after in itertools.pairwise(grid):
        if after not in at or before not in at:
            out.append(0.0)  # appeared or gone: no baseline to measure growth from
            continue
        grown = at[after] - at[before]
        out.append(grown if grown >= 0 else at[after])
    return out


def sources_from(
    events: Mapping[str, Points], totals: Mapping[str, Points], grid: tuple[float, ...]
) -> tuple[Source, ...]:
    """One ``Source`` per pod with a totals series, its counts per step of ``grid``.

    ``events`` without a series for a pod (no error yet) are zeros; a step's
    events are capped at its total (scrapes of the two counters can straddle).
    """
    sources: list[Source] = []
    for name in sorted(totals):
        n = _steps(totals[name], grid)
        e = _steps(events.get(name, ()), grid) if name in events else [0.0] * len(n)
        sources.append(Source(name, tuple(min(a, b) for a, b in zip(e, n, strict=True)), tuple(n)))
    return tuple(sources)
