"""Per-pod, per-step counts against a real Prometheus (issue 13 section 4).

The sequential judge measures how bursty errors are from each pod's counts per step,
which the operator reads with one subquery per counter (``queries.per_source``). Two
scrape targets stand for two pods (the real-pod plane labels series with ``pod``; every
scraped series has ``instance``); their counters grow by known amounts while Prometheus
scrapes them every second, one of them restarts (a counter reset), and the counts read
back must add up to what each pod counted. Skips only without a prometheus binary, and
never under CI.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from slipway.analysis.judges import queries as q
from slipway.analysis.provider import PrometheusProvider
from slipway.analysis.typed import PerPod, per_pod_of
from slipway.api.models import SLO
from tests.prometheus.server import MetricsTarget, PrometheusServer

STABLE = {"namespace": "ml", "release": "fraud-v1"}
CANDIDATE = {"namespace": "ml", "release": "fraud-v2"}
ROUNDS = 6
# Growth per round: (pod, release, requests, errors); pod "b" restarts before round 4.
GROWTH = (("v1-a", STABLE, 100, 1), ("v1-b", STABLE, 100, 10), ("v2-a", CANDIDATE, 50, 2))
RESET_ROUND = 4


class Pods:
    """Three pods' counters on two targets, grown round by round."""

    def __init__(self) -> None:
        self.targets = {"v1-a": MetricsTarget(), "v1-b": MetricsTarget()}
        self.targets["v2-a"] = self.targets["v1-a"]  # the candidate's pod shares a's target
        self.counts = {pod: [0.0, 0.0] for pod, _, _, _ in GROWTH}

    def expose(self) -> None:
        for pod, labels, _, _ in GROWTH:
            requests, errors = self.counts[pod]
            base = {**labels, "pod": pod}
            target = self.targets[pod]
            target.set("model_requests_total", {**base, "code": "200"}, requests - errors)
            target.set("model_requests_total", {**base, "code": "500"}, errors)
            target.set("model_predictions_total", base, requests)
            target.set("model_predictions_correct_total", base, requests - errors)

    def grow(self, round_: int) -> None:
        for pod, _, requests, errors in GROWTH:
            if pod == "v1-b" and round_ == RESET_ROUND:
                self.counts[pod] = [0.0, 0.0]  # restarted: counters from zero
            self.counts[pod][0] += requests
            self.counts[pod][1] += errors
        self.expose()

    def close(self) -> None:
        for target in {id(t): t for t in self.targets.values()}.values():
            target.close()


@pytest.fixture(scope="module")
def provider(prometheus_binary: str) -> Iterator[PrometheusProvider]:
    pods = Pods()
    pods.expose()
    addresses = sorted({t.address for t in pods.targets.values()})
    with PrometheusServer(prometheus_binary, addresses) as server:
        client = PrometheusProvider(server.url, timeout_seconds=5)
        deadline = time.monotonic() + 30
        scraped = "min(count_over_time(model_requests_total[1m]))"
        while (client.query(scraped).value or 0) < 3 and time.monotonic() < deadline:
            time.sleep(0.3)
        for round_ in range(1, ROUNDS + 1):
            pods.grow(round_)
            time.sleep(2.5)  # more than two scrapes and one 2 s step per round
        yield client
        client.close()
    pods.close()


def error_slo() -> SLO:
    return SLO.model_validate(
        {"name": "errors", "errorRate": {}, "threshold": {"maxIncrease": 0.5}}
    )


def read(provider: PrometheusProvider, slo: SLO) -> PerPod:
    return per_pod_of(provider, slo, CANDIDATE, STABLE, 120, step=2)


def test_each_pod_counts_what_it_served_per_step(provider: PrometheusProvider) -> None:
    per_pod = read(provider, error_slo())
    stable = {s.name.split("/")[0]: s for s in per_pod.stable}
    (candidate,) = per_pod.candidate
    assert set(stable) == {"v1-a", "v1-b"} and candidate.name.startswith("v2-a/")
    # pod and instance: the two stable pods are on two scrape targets
    assert len({s.name.split("/")[1] for s in per_pod.stable}) == 2
    steps = {len(s.totals) for s in (*per_pod.stable, candidate)}
    assert len(steps) == 1 and steps.pop() >= ROUNDS  # one grid for both versions
    assert sum(stable["v1-a"].totals) == pytest.approx(100 * ROUNDS)
    assert sum(stable["v1-a"].events) == pytest.approx(1 * ROUNDS)
    assert sum(candidate.totals) == pytest.approx(50 * ROUNDS)
    assert sum(candidate.events) == pytest.approx(2 * ROUNDS)
    # the restart: counted from zero, never negative; what grew between the last point read
    # before it and the restart is lost (at most one round here), never invented
    assert 100 * (ROUNDS - 1) <= sum(stable["v1-b"].totals) <= 100 * ROUNDS
    assert 10 * (ROUNDS - 1) <= sum(stable["v1-b"].events) <= 10 * ROUNDS
    assert all(n >= 0 for s in per_pod.stable for n in s.totals)
    # growth lands in several steps, not one
    assert sum(n > 0 for n in candidate.totals) >= ROUNDS - 1
    assert per_pod.served_seconds is not None and 8 <= per_pod.served_seconds <= 120


def test_ratio_slos_read_good_and_total_per_pod(provider: PrometheusProvider) -> None:
    slo = SLO.model_validate({"name": "accuracy", "ratio": {}, "threshold": {"maxDecrease": 0.05}})
    per_pod = read(provider, slo)
    (candidate,) = per_pod.candidate
    assert sum(candidate.totals) == pytest.approx(50 * ROUNDS)
    assert sum(candidate.events) == pytest.approx(48 * ROUNDS)


def test_a_release_without_series_has_no_sources(provider: PrometheusProvider) -> None:
    nobody = {"namespace": "ml", "release": 'fraud-v3"} or vector(1) #'}
    per_pod = per_pod_of(provider, error_slo(), nobody, STABLE, 120, step=2)
    assert per_pod.candidate == () and per_pod.served_seconds is None
    assert len(per_pod.stable) == 2


def test_the_query_is_a_subquery_by_pod_and_instance() -> None:
    promql = q.per_source('model_requests_total{release="x"}', 600, 10)
    assert promql.startswith("label_join(sum by (pod, instance) (")
    assert promql.endswith("[600s:10s]")
    with pytest.raises(ValueError, match="at least 1 second"):
        q.per_source("x", 0, 10)


# --- reading the answers (pure) -------------------------------------------------------------


def test_sources_from_turns_counters_into_growth_per_step() -> None:
    grid = (0.0, 10.0, 20.0, 30.0, 40.0)
    totals = {
        "a": ((0.0, 5.0), (10.0, 15.0), (20.0, 30.0), (30.0, 4.0), (40.0, 10.0)),  # reset at 30
        "b": ((20.0, 7.0), (30.0, 9.0), (40.0, 12.0)),  # appeared at 20: no baseline before
    }
    events = {"a": ((0.0, 0.0), (10.0, 1.0), (20.0, 30.0), (30.0, 0.0), (40.0, 1.0))}
    a, b = q.sources_from(events, totals, grid)
    assert a.totals == (10.0, 15.0, 4.0, 6.0)
    assert a.events == (1.0, 15.0, 0.0, 1.0)  # 29 errors in a step of 15 requests: capped
    assert b.totals == (0.0, 0.0, 2.0, 3.0) and b.events == (0.0, 0.0, 0.0, 0.0)
    assert q.grid_of(totals, events) == grid


def test_query_by_reads_a_range_vector_as_history() -> None:
    from slipway.analysis.provider import _by_label

    answer = [
        {"metric": {"s": "p1"}, "values": [[20, "3"], [10, "1"]]},
        {"metric": {"s": "p2"}, "values": [[10, "0"]]},
    ]
    result = _by_label(answer, "s")
    assert result.ok and result.history == {"p1": ((10.0, 1.0), (20.0, 3.0)), "p2": ((10.0, 0.0),)}
    twice = _by_label([answer[0], answer[0]], "s")
    assert not twice.ok and "two series" in (twice.error or "")
    unlabelled = _by_label([{"metric": {}, "values": [[1, "1"]]}], "s")
    assert not unlabelled.ok


def test_served_seconds_read_from_any_counter_match_the_per_pod_reading(
    provider: PrometheusProvider,
) -> None:
    """Latency SLOs take the ETA's pace from the histogram's ``_count`` the same way."""
    from slipway.analysis.judges.queries import selector
    from slipway.analysis.typed import served_seconds_of

    series = selector("model_requests_total", CANDIDATE)
    served = served_seconds_of(provider, series, 120, step=2)
    assert served is not None and served == read(provider, error_slo()).served_seconds
    nobody = selector("model_requests_total", {"release": "nobody"})
    assert served_seconds_of(provider, nobody, 120, step=2) is None
