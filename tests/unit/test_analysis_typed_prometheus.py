"""Typed SLOs against a real Prometheus: the count and histogram queries the judges read.

Counters are served by a local target (tests/prometheus/server.py) and grow
while Prometheus scrapes them every second, so ``max_over_time - min_over_time``
sees real growth. Skips only without a prometheus binary, and never under CI.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from slipway.analysis.analyze import Evidence, analyze
from slipway.analysis.judges import queries as q
from slipway.analysis.provider import PrometheusProvider
from slipway.analysis.templates import release_variables
from slipway.api.models import SLO, AnalysisSettings
from slipway.api.phases import Verdict
from tests.prometheus.server import MetricsTarget, PrometheusServer

STABLE = release_variables("ml", "fraud", "fraud-v1", "1")
CANDIDATE = release_variables("ml", "fraud", "fraud-v2", "2")
BOUNDS = ("0.05", "0.1", "0.25", "0.5", "+Inf")
# Per release: (requests, 5xx errors, labelled, correct, cumulative latency buckets).
GROWN = {
    "fraud-v1": (20000, 200, 10000, 9000, (4000, 14000, 19000, 19800, 20000)),
    "fraud-v2": (20000, 1600, 10000, 8400, (1000, 6000, 15000, 19000, 20000)),
}


def expose(target: MetricsTarget, scale: float) -> None:
    for release, (requests, errors, labelled, correct, buckets) in GROWN.items():
        base = {"namespace": "ml", "release": release}
        target.set("model_requests_total", {**base, "code": "200"}, scale * (requests - errors))
        target.set("model_requests_total", {**base, "code": "500"}, scale * errors)
        target.set("model_predictions_total", base, scale * labelled)
        target.set("model_predictions_correct_total", base, scale * correct)
        for le, count in zip(BOUNDS, buckets, strict=True):
            target.set("model_request_duration_seconds_bucket", {**base, "le": le}, scale * count)


@pytest.fixture(scope="module")
def provider(prometheus_binary: str) -> Iterator[PrometheusProvider]:
    target = MetricsTarget()
    expose(target, 0.0)
    with PrometheusServer(prometheus_binary, [target.address]) as server:
        client = PrometheusProvider(server.url, timeout_seconds=5)
        # A few scrapes at zero, then the counters grow to their totals.
        deadline = time.monotonic() + 30
        query = "min(count_over_time(model_requests_total[1m]))"
        while (client.query(query).value or 0) < 3 and time.monotonic() < deadline:
            time.sleep(0.3)
        expose(target, 1.0)
        grown = 'sum(model_requests_total{release="fraud-v2"})'
        while (client.query(grown).value or 0) < 20000 and time.monotonic() < deadline:
            time.sleep(0.3)
        yield client
        client.close()
    target.close()


def test_count_queries_read_what_the_counters_grew_by(provider: PrometheusProvider) -> None:
    labels = {"namespace": "ml", "release": "fraud-v2"}
    errors, requests = q.error_rate_queries(labels, 60)
    assert provider.query(requests).value == pytest.approx(20000)
    assert provider.query(errors).value == pytest.approx(1600)
    good, total = q.ratio_queries(labels, 60)
    assert provider.query(good).value == pytest.approx(8400)
    assert provider.query(total).value == pytest.approx(10000)


def test_histogram_query_reads_every_bucket(provider: PrometheusProvider) -> None:
    answer = provider.query_by(
        q.histogram_query({"namespace": "ml", "release": "fraud-v1"}, 60), "le"
    )
    histogram = q.histogram_from(answer.series or {})
    assert histogram.bounds[-1] == float("inf")
    assert histogram.cumulative == pytest.approx((4000, 14000, 19000, 19800, 20000))


def slos() -> list[SLO]:
    return [
        SLO.model_validate({"name": "errors", "errorRate": {}, "threshold": {"maxIncrease": 0.5}}),
        SLO.model_validate({"name": "accuracy", "ratio": {}, "threshold": {"maxDecrease": 0.02}}),
        SLO.model_validate(
            {
                "name": "latency",
                "latency": {"quantile": 0.95},
                "threshold": {"maxIncrease": 0.2},
            }
        ),
    ]


def test_sequential_judge_fails_a_regressed_candidate_on_real_counts(
    provider: PrometheusProvider,
) -> None:
    now = datetime.now(UTC)
    evidence = Evidence(started=now - timedelta(seconds=40), now=now)
    results = analyze(slos(), provider, CANDIDATE, STABLE, AnalysisSettings(), evidence)
    by_name = {r.slo: r for r in results}
    # 8 % errors vs 1 %, 84 % vs 90 % accurate, a much slower tail: all proven worse.
    for name in ("errors", "accuracy", "latency"):
        assert by_name[name].verdict is Verdict.FAIL, by_name[name].reason
        assert by_name[name].judge == "sequential"
    errors = by_name["errors"]
    assert errors.value == pytest.approx(0.08) and errors.baseline == pytest.approx(0.01)
    assert errors.samples == pytest.approx(20000) and errors.lower is not None
    assert errors.limit == pytest.approx(0.015)


def test_identical_releases_pass_on_real_counts(provider: PrometheusProvider) -> None:
    now = datetime.now(UTC)
    evidence = Evidence(started=now - timedelta(seconds=40), now=now)
    results = analyze(slos(), provider, STABLE, STABLE, AnalysisSettings(), evidence)
    assert [r.verdict for r in results] == [Verdict.PASS] * 3, [r.reason for r in results]


def test_unknown_metric_is_unmeasured_not_gathering(provider: PrometheusProvider) -> None:
    slo = SLO.model_validate(
        {"name": "typo", "errorRate": {"requests": "no_such_total"}, "threshold": {"max": 0.1}}
    )
    now = datetime.now(UTC)
    (result,) = analyze([slo], provider, CANDIDATE, STABLE, AnalysisSettings(), Evidence(now, now))
    assert result.verdict is Verdict.INCONCLUSIVE and not result.gathering
    assert "no series match" in result.reason
