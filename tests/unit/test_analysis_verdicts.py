"""Verdict rules: every threshold kind, missing data, samples, and combining a tick."""

from __future__ import annotations

import math
from typing import Any

import pytest

from slipway.analysis.verdicts import (
    bounds,
    combine,
    describe_threshold,
    explain,
    fmt,
    inconclusive,
    is_relative,
    judge,
)
from slipway.api.models import SLO, SLOResult, SLOThreshold
from slipway.api.phases import Verdict

P, F, INC = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE
NAN = math.nan
INF = math.inf


def slo(samples_query: str | None = None, **threshold: Any) -> SLO:
    return SLO(
        name="latency",
        query="q",
        threshold=SLOThreshold(**threshold),
        samples_query=samples_query,
        window="5m",
    )


@pytest.mark.parametrize(
    ("threshold", "value", "baseline", "verdict"),
    [
        # absolute max
        ({"max": 0.25}, 0.2, None, P),
        ({"max": 0.25}, 0.25, None, P),
        ({"max": 0.25}, 0.2500001, None, F),
        ({"max": 0.25}, -1.0, None, P),
        ({"max": 0.25}, INF, None, F),
        ({"max": 0.0}, 0.0, None, P),
        # absolute min
        ({"min": 0.9}, 0.95, None, P),
        ({"min": 0.9}, 0.9, None, P),
        ({"min": 0.9}, 0.89, None, F),
        ({"min": 0.9}, -INF, None, F),
        # a band
        ({"min": 0.1, "max": 0.2}, 0.15, None, P),
        ({"min": 0.1, "max": 0.2}, 0.05, None, F),
        ({"min": 0.1, "max": 0.2}, 0.25, None, F),
        # maxIncrease, ratio
        ({"max_increase": 0.1}, 0.22, 0.2, P),
        ({"max_increase": 0.1}, 0.2, 0.2, P),
        ({"max_increase": 0.1}, 0.1, 0.2, P),
        ({"max_increase": 0.1}, 0.2201, 0.2, F),
        ({"max_increase": 0.0}, 0.2, 0.2, P),
        ({"max_increase": 0.0}, 0.2000001, 0.2, F),
        ({"max_increase": 0.1}, 0.33, 0.3, P),  # 0.3*1.1 rounds to 0.33000000000000007
        ({"max_increase": 1.0}, 0.4, 0.2, P),
        ({"max_increase": 0.1}, 0.0, 0.0, P),  # zero baseline: zero passes
        ({"max_increase": 0.1}, 1e-9, 0.0, F),  # zero baseline: any rise fails
        ({"max_increase": 0.1}, -1.05, -1.0, P),  # negative metric: limit is -0.9
        ({"max_increase": 0.1}, -0.85, -1.0, F),
        # maxDecrease, ratio
        ({"max_decrease": 0.1}, 0.9, 1.0, P),
        ({"max_decrease": 0.1}, 0.89, 1.0, F),
        ({"max_decrease": 0.1}, 2.0, 1.0, P),
        ({"max_decrease": 0.1}, 0.0, 0.0, P),
        ({"max_decrease": 0.1}, -0.001, 0.0, F),
        # absolute relative
        ({"max_increase": 0.05, "relative": "absolute"}, 0.25, 0.2, P),
        ({"max_increase": 0.05, "relative": "absolute"}, 0.26, 0.2, F),
        ({"max_increase": 0.05, "relative": "absolute"}, 0.04, 0.0, P),
        ({"max_decrease": 0.05, "relative": "absolute"}, 0.85, 0.9, P),
        ({"max_decrease": 0.05, "relative": "absolute"}, 0.84, 0.9, F),
        # relative and absolute together
        ({"max": 0.3, "max_increase": 0.1}, 0.21, 0.2, P),
        ({"max": 0.3, "max_increase": 0.1}, 0.25, 0.2, F),  # relative bound breaks
        ({"max": 0.3, "max_increase": 1.0}, 0.35, 0.2, F),  # absolute bound breaks
        ({"max_increase": 0.1, "max_decrease": 0.1}, 1.05, 1.0, P),
        ({"max_increase": 0.1, "max_decrease": 0.1}, 0.85, 1.0, F),
        # no baseline: relative bounds cannot be judged; absolute ones still can
        ({"max_increase": 0.1}, 0.2, None, INC),
        ({"max_increase": 0.1}, 0.2, NAN, INC),
        ({"max_increase": 0.1}, 0.2, INF, INC),
        ({"max": 0.3, "max_increase": 0.1}, 0.2, None, INC),
        ({"max": 0.3, "max_increase": 0.1}, 0.5, None, F),
        # no data
        ({"max": 0.25}, None, None, INC),
        ({"max": 0.25}, NAN, None, INC),
        ({"max_increase": 0.1}, None, 0.2, INC),
        ({"min": 0.9}, NAN, None, INC),
    ],
)
def test_judge(
    threshold: dict[str, Any], value: float | None, baseline: float | None, verdict: Verdict
) -> None:
    result = judge(slo(**threshold), value, baseline, None, 1)
    assert result.verdict is verdict, result.reason
    assert result.slo == "latency"
    assert result.reason.startswith("SLO latency: ")
    # Status never carries a number JSON cannot hold.
    for number in (result.value, result.baseline):
        assert number is None or math.isfinite(number)


@pytest.mark.parametrize(
    ("threshold", "baseline", "text"),
    [
        ({"max": 0.25}, None, "<= 0.25"),
        ({"min": 0.9}, None, ">= 0.9"),
        ({"min": 0.1, "max": 2000}, None, ">= 0.1 and <= 2000"),
        ({"max_increase": 0.1}, 0.2, "<= stable*1.10 (0.2200)"),
        ({"max_increase": 0.125}, 0.2, "<= stable*1.125 (0.2250)"),
        ({"max_increase": 0.1}, None, "<= stable*1.10 (no baseline)"),
        ({"max_decrease": 0.05}, 0.9, ">= stable*0.95 (0.8550)"),
        ({"max_increase": 0.05, "relative": "absolute"}, 0.2, "<= stable+0.05 (0.2500)"),
        ({"max_decrease": 0.05, "relative": "absolute"}, 0.9, ">= stable-0.05 (0.8500)"),
        ({"max_increase": 0.1}, 1500.0, "<= stable*1.10 (1650.0000)"),
        ({"max_increase": 0.1}, 1e-5, "<= stable*1.10 (1.1e-05)"),
        ({"max_increase": 0.1}, 0.0, "<= stable*1.10 (0.0000)"),
        (
            {"min": 0.9, "max_increase": 0.1, "max_decrease": 0.2},
            1.0,
            ">= 0.9 and <= stable*1.10 (1.1000) and >= stable*0.80 (0.8000)",
        ),
    ],
)
def test_threshold_text(threshold: dict[str, Any], baseline: float | None, text: str) -> None:
    assert describe_threshold(SLOThreshold(**threshold), baseline) == text
    result = judge(slo(**threshold), 0.5, baseline, None, 1)
    assert result.threshold == text


def test_fail_reason_names_slo_value_and_broken_bound() -> None:
    result = judge(slo(max=0.3, max_increase=0.1), 0.25, 0.2, None, 1)
    assert result.verdict is F
    assert result.reason == "SLO latency: 0.25 violates <= stable*1.10 (0.2200) (stable 0.2)"
    assert (result.value, result.baseline) == (0.25, 0.2)
    assert result.threshold == "<= 0.3 and <= stable*1.10 (0.2200)"


def test_pass_reason() -> None:
    result = judge(slo(max=0.25), 0.2, None, None, 1)
    assert result.reason == "SLO latency: 0.2 meets <= 0.25"


def test_infinite_value_is_reported_not_stored() -> None:
    result = judge(slo(max=0.25), INF, None, None, 1)
    assert result.verdict is F
    assert result.value is None
    assert result.reason == "SLO latency: +Inf violates <= 0.25"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "SLO latency: no data (the query returned no sample)"),
        (NAN, "SLO latency: no data (the query returned NaN)"),
    ],
)
def test_no_data_reason(value: float | None, reason: str) -> None:
    result = judge(slo(max=0.25), value, None, None, 1)
    assert (result.verdict, result.reason, result.value) == (INC, reason, None)
    assert result.threshold == "<= 0.25"


def test_missing_baseline_reason() -> None:
    result = judge(slo(max_increase=0.1), 0.3, None, None, 1)
    assert result.reason == (
        "SLO latency: 0.3 cannot be checked against <= stable*1.10 (no baseline):"
        " no data for the stable release"
    )
    explained = judge(slo(max_increase=0.1), 0.3, None, None, 1, baseline_error="stable down")
    assert explained.reason.endswith(": stable down")


@pytest.mark.parametrize(
    ("samples_query", "samples", "min_samples", "value", "verdict"),
    [
        ("count", 100.0, 50, 0.2, P),
        ("count", 50.0, 50, 0.2, P),
        ("count", 49.9, 50, 0.2, INC),
        ("count", 0.0, 1, 0.2, INC),
        ("count", None, 1, 0.2, INC),  # samples query found nothing: zero samples
        ("count", NAN, 1, 0.2, INC),
        ("count", 3.0, 50, 0.9, INC),  # too few samples: not even a clear fail counts
        ("count", None, 0, 0.2, P),  # minSamples 0: no requirement
        ("count", None, 0, 0.9, F),
        (None, None, 50, 0.2, P),  # no samples query: nothing to count
        (None, 0.0, 50, 0.9, F),
        ("count", 100.0, 50, None, INC),  # no data wins over enough samples
    ],
)
def test_samples(
    samples_query: str | None,
    samples: float | None,
    min_samples: int,
    value: float | None,
    verdict: Verdict,
) -> None:
    result = judge(slo(samples_query, max=0.5), value, None, samples, min_samples)
    assert result.verdict is verdict, result.reason


def test_samples_reason() -> None:
    result = judge(slo("count", max=0.5), 0.2, None, 3.0, 50)
    assert result.reason == "SLO latency: 3 samples in 5m, fewer than the 50 required"
    assert result.value == 0.2


def test_inconclusive_helper() -> None:
    result = inconclusive(slo(max_increase=0.1), "query failed: boom", value=NAN, baseline=0.2)
    assert result == SLOResult(
        slo="latency",
        verdict=INC,
        value=None,
        baseline=0.2,
        threshold="<= stable*1.10 (0.2200)",
        reason="SLO latency: query failed: boom",
    )


@pytest.mark.parametrize(
    ("threshold", "relative"),
    [
        ({"max": 1}, False),
        ({"min": 1}, False),
        ({"max_increase": 0.1}, True),
        ({"max_decrease": 0.1, "relative": "absolute"}, True),
    ],
)
def test_is_relative(threshold: dict[str, Any], relative: bool) -> None:
    assert is_relative(SLOThreshold(**threshold)) is relative


def test_bounds_without_baseline_have_no_limit() -> None:
    found = bounds(SLOThreshold(max=1.0, max_decrease=0.5), None)
    assert [(b.op, b.limit) for b in found] == [("<=", 1.0), (">=", None)]


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0.25, "0.25"),
        (1200.0, "1200"),
        (1.5e-5, "1.5e-05"),
        (INF, "+Inf"),
        (-INF, "-Inf"),
        (NAN, "NaN"),
        (3.0, "3"),
    ],
)
def test_fmt(number: float, text: str) -> None:
    assert fmt(number) == text


def result(verdict: Verdict, name: str = "s") -> SLOResult:
    return SLOResult(slo=name, verdict=verdict, reason=f"SLO {name}: {verdict}")


@pytest.mark.parametrize(
    ("verdicts", "combined"),
    [
        ([], P),  # nothing to measure
        ([P], P),
        ([P, P, P], P),
        ([INC], INC),
        ([P, INC], INC),
        ([INC, P], INC),
        ([F], F),
        ([P, F], F),
        ([INC, F], F),
        ([F, INC, P], F),
    ],
)
def test_combine(verdicts: list[Verdict], combined: Verdict) -> None:
    assert combine(result(v) for v in verdicts) is combined


def test_explain() -> None:
    tick = [result(P, "a"), result(INC, "b"), result(F, "c"), result(F, "d")]
    assert explain(tick) == "SLO c: Fail; SLO d: Fail"
    assert explain([result(P, "a"), result(INC, "b")]) == "SLO b: Inconclusive"
    assert explain([result(P, "a"), result(P, "b")]) == "all 2 SLOs passed"
    assert explain([]) == "no SLOs to analyse"


@pytest.mark.parametrize(("threshold", "value"), [({"min": 0.9}, INF), ({"max": 0.25}, -INF)])
def test_infinity_never_passes(threshold: dict[str, float], value: float) -> None:
    result = judge(slo(**threshold), value, None, None, 1)
    assert result.verdict is INC
    assert "not a measurement" in result.reason
