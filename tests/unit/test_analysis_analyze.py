"""One analysis tick against a scripted provider: queries sent, count, and short-circuits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from slipway.analysis.analyze import analyze, queries_for, queries_per_tick
from slipway.analysis.provider import PROVIDERS, PrometheusProvider, QueryResult, make_provider
from slipway.analysis.templates import release_variables
from slipway.api.models import SLO, AnalysisSettings, SLOThreshold
from slipway.api.phases import Verdict

CANDIDATE = release_variables("ml", "fraud", "fraud-v2", "2")
STABLE = release_variables("ml", "fraud", "fraud-v1", "1")
SETTINGS = AnalysisSettings(min_samples=10)


class ScriptedProvider:
    """Answers each query with ``answer(query)`` and records what it was asked."""

    def __init__(self, answer: Callable[[str], QueryResult]) -> None:
        self.answer = answer
        self.queries: list[str] = []

    def query(self, promql: str) -> QueryResult:
        self.queries.append(promql)
        return self.answer(promql)

    def is_online(self) -> bool:
        return True


def by_release(values: dict[str, QueryResult]) -> Callable[[str], QueryResult]:
    def answer(query: str) -> QueryResult:
        for key, value in values.items():
            if key in query:
                return value
        return QueryResult()

    return answer


def make_slo(name: str = "latency", samples: bool = False, **threshold: Any) -> SLO:
    return SLO(
        name=name,
        query=f'{name}{{release="{{{{release}}}}"}}[{{{{window}}}}]',
        threshold=SLOThreshold(**threshold),
        samples_query='count{release="{{release}}"}' if samples else None,
        window="2m",
    )


def test_relative_slo_queries_candidate_samples_and_stable_over_the_same_window() -> None:
    provider = ScriptedProvider(
        by_release(
            {
                'count{release="fraud-v2"}': QueryResult(value=100),
                '"fraud-v2"': QueryResult(value=0.21),
                '"fraud-v1"': QueryResult(value=0.2),
            }
        )
    )
    slos = [make_slo(samples=True, max_increase=0.1)]
    (result,) = analyze(slos, provider, CANDIDATE, STABLE, SETTINGS)
    assert provider.queries == [
        'latency{release="fraud-v2"}[2m]',
        'count{release="fraud-v2"}',
        'latency{release="fraud-v1"}[2m]',
    ]
    assert len(provider.queries) == queries_per_tick(slos, SETTINGS) == 3
    assert result.verdict is Verdict.PASS
    assert (result.value, result.baseline) == (0.21, 0.2)
    assert result.threshold == "<= stable*1.10 (0.2200)"


def test_regressed_candidate_fails() -> None:
    provider = ScriptedProvider(
        by_release({'"fraud-v2"': QueryResult(value=0.3), '"fraud-v1"': QueryResult(value=0.2)})
    )
    (result,) = analyze([make_slo(max_increase=0.1)], provider, CANDIDATE, STABLE, SETTINGS)
    assert result.verdict is Verdict.FAIL
    assert result.reason == "SLO latency: 0.3 violates <= stable*1.10 (0.2200) (stable 0.2)"


@pytest.mark.parametrize(
    ("slo", "settings", "count"),
    [
        (make_slo(max=1), SETTINGS, 1),
        (make_slo(max_increase=0.1), SETTINGS, 2),
        (make_slo(samples=True, max=1), SETTINGS, 2),
        (make_slo(samples=True, max=1, max_decrease=0.1), SETTINGS, 3),
        (make_slo(samples=True, max=1), AnalysisSettings(min_samples=0), 1),
    ],
)
def test_query_count_is_minimal(slo: SLO, settings: AnalysisSettings, count: int) -> None:
    provider = ScriptedProvider(lambda q: QueryResult(value=100.0))
    analyze([slo], provider, CANDIDATE, STABLE, settings)
    assert len(provider.queries) == queries_for(slo, settings) == count


def test_unreachable_backend_stops_the_tick() -> None:
    down = QueryResult.failed("Prometheus at http://p unreachable: refused", unreachable=True)
    provider = ScriptedProvider(lambda q: down)
    slos = [make_slo("a", max=1), make_slo("b", max=1), make_slo("c", max_increase=0.1)]
    results = analyze(slos, provider, CANDIDATE, STABLE, SETTINGS)
    assert len(provider.queries) == 1
    assert [r.verdict for r in results] == [Verdict.INCONCLUSIVE] * 3
    assert results[0].reason == (
        "SLO a: candidate query failed: Prometheus at http://p unreachable: refused"
    )
    assert results[2].reason.startswith("SLO c: not queried: Prometheus at http://p")
    assert results[2].threshold == "<= stable*1.10 (no baseline)"


def test_bad_query_is_inconclusive_and_skips_the_slos_other_queries() -> None:
    bad = QueryResult.failed("Prometheus answered HTTP 400: bad_data: parse error")
    provider = ScriptedProvider(by_release({'"fraud-v2"': bad}))
    slos = [make_slo("a", samples=True, max_increase=0.1), make_slo("b", max=1)]
    results = analyze(slos, provider, CANDIDATE, STABLE, SETTINGS)
    assert len(provider.queries) == 2  # a's candidate query, then b's
    assert results[0].verdict is Verdict.INCONCLUSIVE
    assert "parse error" in results[0].reason
    assert results[1].verdict is Verdict.INCONCLUSIVE  # b: no data for its query


def test_stable_query_error_explains_the_missing_baseline() -> None:
    provider = ScriptedProvider(
        by_release({'"fraud-v2"': QueryResult(value=0.2), '"fraud-v1"': QueryResult.failed("boom")})
    )
    (result,) = analyze([make_slo(max_increase=0.1)], provider, CANDIDATE, STABLE, SETTINGS)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.reason.endswith(": stable baseline query failed: boom")
    assert result.value == 0.2


def test_stable_query_error_does_not_hide_an_absolute_failure() -> None:
    provider = ScriptedProvider(
        by_release({'"fraud-v2"': QueryResult(value=2.0), '"fraud-v1"': QueryResult.failed("boom")})
    )
    (result,) = analyze([make_slo(max=1, max_increase=0.1)], provider, CANDIDATE, STABLE, SETTINGS)
    assert result.verdict is Verdict.FAIL


def test_no_stable_release_makes_relative_slos_inconclusive_without_querying() -> None:
    provider = ScriptedProvider(lambda q: QueryResult(value=0.2))
    (result,) = analyze([make_slo(max_increase=0.1)], provider, CANDIDATE, None, SETTINGS)
    assert len(provider.queries) == 1
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.reason.endswith(": no stable release to compare with")


def test_samples_query_error() -> None:
    provider = ScriptedProvider(
        by_release({"count": QueryResult.failed("boom"), '"fraud-v2"': QueryResult(value=0.1)})
    )
    (result,) = analyze([make_slo(samples=True, max=1)], provider, CANDIDATE, STABLE, SETTINGS)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.reason == "SLO latency: samples query failed: boom"
    assert result.value == 0.1


def test_template_error_is_inconclusive_and_the_tick_goes_on() -> None:
    broken = SLO(name="broken", query="x[{{release}}]", threshold=SLOThreshold(max=1))
    provider = ScriptedProvider(lambda q: QueryResult(value=0.5))
    results = analyze([broken, make_slo(max=1)], provider, CANDIDATE, STABLE, SETTINGS)
    assert results[0].verdict is Verdict.INCONCLUSIVE
    assert results[0].reason.startswith(
        "SLO broken: template error: {{release}} must sit inside a double-quoted"
    )
    assert results[1].verdict is Verdict.PASS
    assert len(provider.queries) == 1


def test_no_slos_no_queries() -> None:
    provider = ScriptedProvider(lambda q: QueryResult(value=1))
    assert analyze([], provider, CANDIDATE, STABLE, SETTINGS) == []
    assert provider.queries == []
    assert queries_per_tick([], SETTINGS) == 0


def test_registry() -> None:
    assert {"prometheus": PrometheusProvider} == PROVIDERS
    provider = make_provider("prometheus", "http://127.0.0.1:1/", 1.5)
    assert isinstance(provider, PrometheusProvider)
    assert provider.url == "http://127.0.0.1:1"
    with pytest.raises(ValueError, match="unknown metric provider 'datadog'; known: prometheus"):
        make_provider("datadog", "http://x")
    with pytest.raises(ValueError, match="timeout_seconds must be positive"):
        PrometheusProvider("http://127.0.0.1:1", 0)


@pytest.mark.parametrize(
    ("result", "ok", "no_data"),
    [
        (QueryResult(), True, True),
        (QueryResult(value=float("nan")), True, True),
        (QueryResult(value=1.0), True, False),
        (QueryResult.failed("x"), False, False),
    ],
)
def test_query_result_flags(result: QueryResult, ok: bool, no_data: bool) -> None:
    assert (result.ok, result.no_data) == (ok, no_data)


def test_long_errors_are_cut_for_status() -> None:
    assert len(QueryResult.failed("x" * 5000).error or "") == 300


def test_typed_slos_cost_per_pod_queries_only_with_the_sequential_judge() -> None:
    errors = SLO.model_validate({"name": "e", "errorRate": {}, "threshold": {"max": 0.1}})
    latency = SLO.model_validate(
        {"name": "l", "latency": {"quantile": 0.95}, "threshold": {"max": 0.2}}
    )
    sequential, threshold = AnalysisSettings(), AnalysisSettings(judge="threshold")
    assert (queries_for(errors, sequential), queries_for(errors, threshold)) == (8, 4)
    assert (queries_for(latency, sequential), queries_for(latency, threshold)) == (3, 2)


def test_eta_paces_from_first_service_and_waits_for_a_look() -> None:
    from slipway.analysis.typed import eta_seconds

    # 100 samples in 10 s served: pace half a Poisson sigma low, (100 - 5) / 10 = 9.5/s
    assert eta_seconds(100, 195, 10.0) == pytest.approx(95 / 9.5, abs=0.1)
    assert eta_seconds(100, 195, 10.0, look_seconds=30.0) == 30.0  # decided at the next look
    assert eta_seconds(100, 1000, 10.0, look_seconds=30.0) == 120.0
    assert eta_seconds(100, 100, 10.0) is None and eta_seconds(0, 100, 10.0) is None
    assert eta_seconds(100, None, 10.0) is None and eta_seconds(100, 200, 0.0) is None
