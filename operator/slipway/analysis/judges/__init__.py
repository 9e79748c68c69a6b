"""Judges: deciding Pass / Fail / Inconclusive from measured evidence.

A metric provider measures; a judge decides. Keeping them apart lets one set
of counts be judged two ways, lets the decision-quality benchmark drive the
very code the operator runs, and keeps every judge a pure function.

- ``threshold``: one window's point estimate against the limits (simple,
  and the only judge for raw-PromQL SLOs);
- ``sequential`` (the default): anytime-valid tests on counts since the
  candidate started; Pass only when a regression beyond the tolerance is
  ruled out, and otherwise the samples it still needs.

The operator asks a judge's ``scope`` which counts to fetch (``queries``
builds the PromQL), splits the release's ``ErrorBudget`` with ``per_slo``,
calls ``counts`` or ``latency`` per SLO, and writes ``Judgement.status()``.
Adding a judge is one module and one entry in ``JUDGES``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from slipway.analysis.judges.base import (
    Check,
    Counts,
    CountSLO,
    ErrorBudget,
    Histogram,
    Judge,
    Judgement,
    LatencySLO,
    Scope,
    SLOBudget,
    Source,
    Tolerance,
)
from slipway.analysis.judges.sequential import SequentialJudge
from slipway.analysis.judges.threshold import ThresholdJudge

__all__ = [
    "DEFAULT_JUDGE",
    "JUDGES",
    "Check",
    "CountSLO",
    "Counts",
    "ErrorBudget",
    "Histogram",
    "Judge",
    "Judgement",
    "LatencySLO",
    "SLOBudget",
    "Scope",
    "SequentialJudge",
    "Source",
    "ThresholdJudge",
    "Tolerance",
    "make_judge",
]

JUDGES: Final[Mapping[str, Callable[[], Judge]]] = {
    "threshold": ThresholdJudge,
    "sequential": SequentialJudge,
}
"""Judges by name, one entry per judge."""

DEFAULT_JUDGE: Final = "sequential"


def make_judge(name: str = DEFAULT_JUDGE) -> Judge:
    """Build the judge registered as ``name``; ValueError naming the known ones."""
    try:
        factory = JUDGES[name]
    except KeyError:
        known = ", ".join(sorted(JUDGES))
        raise ValueError(f"unknown judge {name!r}; known: {known}") from None
    return factory()
