"""The Prometheus provider and a whole analysis tick against a real Prometheus.

Prometheus runs on 127.0.0.1 (see tests/prometheus/server.py), scraping gauges
this module sets every second. These tests skip only when no prometheus binary
can be had (e2e/prometheus/ensure.sh installs Debian's); under CI=true that is
a failure instead, so CI never passes them by skipping.
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Iterator

import pytest

from slipway.analysis.analyze import analyze, queries_per_tick
from slipway.analysis.provider import PrometheusProvider, QueryResult
from slipway.analysis.templates import release_variables, render
from slipway.analysis.verdicts import combine, judge
from slipway.api.models import SLO, AnalysisSettings, SLOThreshold
from slipway.api.phases import Verdict
from tests.prometheus.server import MetricsTarget, PrometheusServer, free_port

LATENCY = "slipway_test_latency_seconds"
WEIRD = "slipway_test_weird"
INJECTION = 'x"} or vector(1) #'
ODD = 'back\\slash "quoted"\nnewline'
LABELS = {"namespace": "ml", "deployment": "fraud"}
STABLE = release_variables("ml", "fraud", "fraud-v1", "1")
GOOD = release_variables("ml", "fraud", "fraud-v2", "2")
REGRESSED = release_variables("ml", "fraud", "fraud-v3", "3")
FAST = 2.0  # seconds: the most an unreachable Prometheus may cost a query


@pytest.fixture(scope="module")
def target() -> Iterator[MetricsTarget]:
    metrics = MetricsTarget()
    for variables, value in ((STABLE, 0.20), (GOOD, 0.21), (REGRESSED, 0.35)):
        metrics.set(LATENCY, {**LABELS, **variables}, value)
    for release, value in ((INJECTION, 7), ("a.b", 3), ("axb", 4), (ODD, 5)):
        metrics.set(WEIRD, {"release": release}, value)
    metrics.set("slipway_test_nan", {}, math.nan)
    yield metrics
    metrics.close()


def wait_for(provider: PrometheusProvider, promql: str, timeout: float = 20.0) -> float:
    """Poll until ``promql`` has a value (scrapes land every second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = provider.query(promql)
        if answer.value is not None:
            return answer.value
        time.sleep(0.2)
    raise AssertionError(f"no value for {promql} within {timeout}s: last answer {answer}")


@pytest.fixture(scope="module")
def prometheus(prometheus_binary: str, target: MetricsTarget) -> Iterator[PrometheusServer]:
    with PrometheusServer(prometheus_binary, [target.address]) as server:
        provider = PrometheusProvider(server.url, timeout_seconds=5)
        # Two scrapes of every series, so range queries over them have data.
        wait_for(provider, f"min(count_over_time({LATENCY}[1m])) >= 2")
        yield server


@pytest.fixture
def provider(prometheus: PrometheusServer) -> Iterator[PrometheusProvider]:
    client = PrometheusProvider(prometheus.url, timeout_seconds=FAST)
    yield client
    client.close()


# ---------------------------------------------------------------- values and no data


@pytest.mark.parametrize(
    ("promql", "value"),
    [
        (f'sum({LATENCY}{{release="fraud-v1"}})', 0.20),
        (f'{LATENCY}{{release="fraud-v3"}}', 0.35),
        (f'scalar({LATENCY}{{release="fraud-v2"}})', 0.21),
        ("1 + 1", 2.0),
        (f"count({LATENCY})", 3.0),
    ],
)
def test_query_returns_the_value(provider: PrometheusProvider, promql: str, value: float) -> None:
    answer = provider.query(promql)
    assert answer.ok, answer.error
    assert answer.value == pytest.approx(value)


def test_empty_vector_is_no_data(provider: PrometheusProvider) -> None:
    answer = provider.query(f'{LATENCY}{{release="nope"}}')
    assert answer == QueryResult()
    assert answer.no_data


def test_nan_is_no_data_and_inconclusive(provider: PrometheusProvider) -> None:
    answer = provider.query("slipway_test_nan")
    assert answer.ok and answer.no_data
    slo = SLO(name="nan", query="slipway_test_nan", threshold=SLOThreshold(max=1))
    assert judge(slo, answer.value, None, None, 1).verdict is Verdict.INCONCLUSIVE


def test_several_series_ask_for_an_aggregation(provider: PrometheusProvider) -> None:
    answer = provider.query(LATENCY)
    assert not answer.ok and not answer.unreachable
    assert answer.error is not None
    assert "returned 3 series, expected one: aggregate it" in answer.error


def test_range_vector_is_an_error(provider: PrometheusProvider) -> None:
    answer = provider.query("slipway_test_nan[1m]")
    assert answer.error is not None and "range vector" in answer.error


@pytest.mark.parametrize(
    ("promql", "expected"),
    [
        ("sum(", "Prometheus answered HTTP 400: bad_data:"),
        ("rate(slipway_test_nan)", "Prometheus answered HTTP 400: bad_data:"),
        ('{__name__=~".*"}', "Prometheus answered HTTP 400: bad_data:"),
        (f"{LATENCY} + on(namespace) {LATENCY}", "Prometheus answered HTTP 422: execution:"),
    ],
)
def test_bad_promql_is_an_error_result(
    provider: PrometheusProvider, promql: str, expected: str
) -> None:
    answer = provider.query(promql)
    assert answer.value is None and not answer.unreachable
    assert answer.error is not None and answer.error.startswith(expected), answer.error


# ---------------------------------------------------------------- escaping, for real


@pytest.mark.parametrize(
    ("release", "value"),
    [
        (INJECTION, 7.0),  # the literal label value, nothing more
        ('y"} or vector(1) #', None),  # no such series: no data, not vector(1)
        (ODD, 5.0),
        ("a.b", 3.0),
    ],
)
@pytest.mark.parametrize("matcher", ["=", "=~"])
def test_release_names_cannot_change_the_query(
    provider: PrometheusProvider, release: str, value: float | None, matcher: str
) -> None:
    query = render(
        f'sum({WEIRD}{{release{matcher}"{{{{release}}}}"}})', {"release": release}, slo="s"
    )
    answer = provider.query(query)
    assert answer.ok, f"{query}: {answer.error}"
    assert answer.value == value, query


# ---------------------------------------------------------------- unreachable


def test_is_online(provider: PrometheusProvider) -> None:
    assert provider.is_online()


def test_closed_port_is_unreachable_and_fast() -> None:
    provider = PrometheusProvider(f"http://127.0.0.1:{free_port()}", timeout_seconds=FAST)
    started = time.monotonic()
    answer = provider.query("1")
    assert answer.unreachable and answer.value is None
    assert answer.error is not None and "unreachable" in answer.error
    assert not provider.is_online()
    assert time.monotonic() - started < 3


def test_silent_server_times_out() -> None:
    # Accepts connections and never answers: only the timeout ends the wait.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        provider = PrometheusProvider(url, timeout_seconds=1)
        started = time.monotonic()
        answer = provider.query("1")
        assert answer.unreachable, answer
        assert not provider.is_online()
        assert time.monotonic() - started < 3


def test_not_prometheus_is_an_error(target: MetricsTarget) -> None:
    provider = PrometheusProvider(f"http://{target.address}", timeout_seconds=FAST)
    answer = provider.query("1")
    assert answer.error is not None and "not a Prometheus API answer" in answer.error


def test_killed_prometheus_is_unreachable_and_fast(
    prometheus_binary: str, target: MetricsTarget
) -> None:
    server = PrometheusServer(prometheus_binary, [target.address]).start()
    try:
        provider = PrometheusProvider(server.url, timeout_seconds=FAST)
        assert provider.query("1").value == 1.0
        assert provider.is_online()
        server.kill()
        started = time.monotonic()
        answer = provider.query("1")
        assert answer.unreachable, answer
        assert not provider.is_online()
        assert time.monotonic() - started < 3
    finally:
        server.stop()


# ---------------------------------------------------------------- a whole tick


SLOS = [
    SLO(
        name="latency-vs-stable",
        query=(
            f'max_over_time({LATENCY}{{namespace="{{{{namespace}}}}",'
            f'deployment="{{{{ deployment }}}}",release="{{{{release}}}}"}}[{{{{window}}}}])'
        ),
        samples_query=f'sum(count_over_time({LATENCY}{{release="{{{{release}}}}"}}[{{{{window}}}}]))',
        threshold=SLOThreshold(max_increase=0.1),
        window="1m",
    ),
    SLO(
        name="latency-absolute",
        query=f'max({LATENCY}{{release=~"{{{{release}}}}",version="{{{{version}}}}"}})',
        threshold=SLOThreshold(max=0.5),
    ),
]
SETTINGS = AnalysisSettings(min_samples=2)


class Counting:
    """Counts the queries a tick sends through a real provider."""

    def __init__(self, inner: PrometheusProvider) -> None:
        self.inner = inner
        self.count = 0

    def query(self, promql: str) -> QueryResult:
        self.count += 1
        return self.inner.query(promql)

    def is_online(self) -> bool:
        return self.inner.is_online()


def test_analyze_passes_a_good_candidate(provider: PrometheusProvider) -> None:
    counting = Counting(provider)
    results = analyze(SLOS, counting, GOOD, STABLE, SETTINGS)
    assert [r.verdict for r in results] == [Verdict.PASS, Verdict.PASS], results
    assert combine(results) is Verdict.PASS
    assert results[0].value == pytest.approx(0.21)
    assert results[0].baseline == pytest.approx(0.20)
    assert results[0].threshold == "<= stable*1.10 (0.2200)"
    assert counting.count == queries_per_tick(SLOS, SETTINGS) == 4


def test_analyze_fails_a_regressed_candidate(provider: PrometheusProvider) -> None:
    results = analyze(SLOS, provider, REGRESSED, STABLE, SETTINGS)
    assert [r.verdict for r in results] == [Verdict.FAIL, Verdict.PASS], results
    assert combine(results) is Verdict.FAIL
    assert results[0].reason == (
        "SLO latency-vs-stable: 0.35 violates <= stable*1.10 (0.2200) (stable 0.2)"
    )


def test_analyze_is_inconclusive_without_enough_samples(provider: PrometheusProvider) -> None:
    results = analyze(SLOS, provider, GOOD, STABLE, AnalysisSettings(min_samples=100_000))
    assert results[0].verdict is Verdict.INCONCLUSIVE
    assert "fewer than the 100000 required" in results[0].reason
    assert combine(results) is Verdict.INCONCLUSIVE


def test_analyze_against_a_stopped_prometheus_is_inconclusive_and_fast() -> None:
    provider = PrometheusProvider(f"http://127.0.0.1:{free_port()}", timeout_seconds=FAST)
    counting = Counting(provider)
    started = time.monotonic()
    results = analyze(SLOS, counting, GOOD, STABLE, SETTINGS)
    assert [r.verdict for r in results] == [Verdict.INCONCLUSIVE] * 2
    assert counting.count == 1
    assert time.monotonic() - started < 3
