"""Prediction agreement of a shadow candidate: the join, the judge, and measuring them together.

The judge is held to what the sequential judge promises: over every look, a candidate whose
agreement is at least ``minAgreement`` is failed with probability at most the budget, one
below it is passed with at most the budget, and a clearly worse one is caught. Real pods and
the API server (``KubePredictionSource``) are tested in tests/e2e/test_prediction_source.py.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from kubernetes import client
from pydantic import ValidationError

from slipway.analysis.agreement import (
    AgreementCounts,
    KubePredictionSource,
    PredictionSourceError,
    _error_text,
    join,
    judge_agreement,
    measure_agreement,
    parse_predictions,
    pod_port,
)
from slipway.analysis.bounded import AnswerError, AnswerTooLargeError
from slipway.api.models import ShadowSpec
from slipway.api.phases import Verdict

P, F, INC = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE
BUDGET = 0.05


# --- join ----------------------------------------------------------------------------------


def test_join_counts_ids_in_both_and_same_answers() -> None:
    stable = {"a": 1, "b": 0, "c": 1, "s": 0}
    candidate = {"a": 1, "b": 1, "c": 1, "x": 1, "y": 0}
    assert join(stable, candidate) == AgreementCounts(
        joined=3, agreed=2, stable_only=1, candidate_only=2
    )


def test_join_is_symmetric_in_what_it_counts() -> None:
    stable = {f"r{i}": i % 2 for i in range(10)}
    candidate = {f"r{i}": (i // 3) % 2 for i in range(5, 30)}
    one, other = join(stable, candidate), join(candidate, stable)
    assert (one.joined, one.agreed) == (other.joined, other.agreed)
    assert (one.stable_only, one.candidate_only) == (other.candidate_only, other.stable_only)


@pytest.mark.parametrize(
    ("stable", "candidate", "expected"),
    [
        ({}, {}, AgreementCounts(0, 0)),
        ({"a": 1}, {}, AgreementCounts(0, 0, stable_only=1)),
        ({}, {"a": 1}, AgreementCounts(0, 0, candidate_only=1)),
        ({"a": 1}, {"b": 1}, AgreementCounts(0, 0, 1, 1)),  # same answers, different requests
        ({"a": 1}, {"a": 1}, AgreementCounts(1, 1)),
        ({"a": 1}, {"a": 0}, AgreementCounts(1, 0)),
        ({"a": 2, "b": 7}, {"a": 2, "b": 3}, AgreementCounts(2, 1)),  # any class labels
        ({"r/0": 1, "r/1": 0}, {"r/0": 1, "r/1": 1, "r": 0}, AgreementCounts(2, 1, 0, 1)),
        ({"A": 1}, {"a": 1}, AgreementCounts(0, 0, 1, 1)),  # ids are case-sensitive
    ],
)
def test_join_edge_cases(
    stable: dict[str, int], candidate: dict[str, int], expected: AgreementCounts
) -> None:
    assert join(stable, candidate) == expected


def test_join_does_not_touch_its_inputs() -> None:
    stable, candidate = {"a": 1, "b": 0}, {"b": 0}
    join(stable, candidate)
    assert stable == {"a": 1, "b": 0} and candidate == {"b": 0}


def test_counts_rate_and_validation() -> None:
    assert AgreementCounts(4, 3).rate == 0.75 and AgreementCounts(4, 3).disagreed == 1
    assert AgreementCounts(0, 0).rate is None
    with pytest.raises(ValueError, match="out of only"):
        AgreementCounts(2, 3)
    with pytest.raises(ValueError, match=">= 0"):
        AgreementCounts(-1, 0)
    with pytest.raises(ValueError, match=">= 0"):
        AgreementCounts(1, 1, stable_only=-1)


# --- judge ---------------------------------------------------------------------------------


def judged(joined: int, agreed: int, min_agreement: float = 0.9, budget: float = BUDGET) -> Any:
    return judge_agreement(AgreementCounts(joined, agreed), min_agreement, budget)


def test_nothing_joined_is_gathering_and_says_so() -> None:
    result = judge_agreement(AgreementCounts(0, 0, stable_only=40, candidate_only=3), 0.9, 0.05)
    assert result.verdict is INC and result.gathering
    assert "no mirrored request was joined yet" in result.reason
    assert "40 stable-only, 3 candidate-only" in result.reason
    assert result.value is None and result.lower is None and result.upper is None
    assert (result.slo, result.judge, result.metric) == (
        "agreement",
        "sequential",
        "agreement rate",
    )
    assert result.threshold == ">= 0.9"


def test_every_result_names_the_slo_judge_metric_and_threshold() -> None:
    for result in (judged(10, 10), judged(500, 500), judged(200, 10), judged(100, 90)):
        assert (result.slo, result.judge, result.metric) == (
            "agreement",
            "sequential",
            "agreement rate",
        )
        assert result.threshold == ">= 0.9" and result.reason.startswith("SLO agreement:")
        assert result.limit == pytest.approx(0.9)


def test_full_agreement_passes_once_the_lower_bound_clears_the_minimum() -> None:
    verdicts = {n: judged(n, n).verdict for n in range(1, 400)}
    first = min(n for n, v in verdicts.items() if v is P)
    assert 10 < first < 200  # needs real evidence, but not an absurd amount at 90 %
    assert all(verdicts[n] is INC for n in range(1, first))  # never Fail on the way
    assert all(verdicts[n] is P for n in range(first, 400))  # and stays passed
    before, at = judged(first - 1, first - 1), judged(first, first)
    assert before.lower is not None and before.lower <= 0.9 and before.gathering
    assert at.lower is not None and at.lower >= 0.9 and not at.gathering
    assert at.value == 1.0 and at.samples == first and at.samples_needed == first


def test_no_agreement_fails_once_the_upper_bound_drops_below_the_minimum() -> None:
    verdicts = {n: judged(n, 0).verdict for n in range(1, 100)}
    first = min(n for n, v in verdicts.items() if v is F)
    assert first < 40
    assert all(verdicts[n] is INC for n in range(1, first))
    assert all(verdicts[n] is F for n in range(first, 100))
    result = judged(first, 0)
    assert result.upper is not None and result.upper < 0.9 and not result.gathering
    assert result.value == 0.0 and "below" in result.reason


@pytest.mark.parametrize("joined", [10, 100, 1_000, 100_000])
def test_agreement_exactly_at_the_minimum_never_decides(joined: int) -> None:
    result = judged(joined, int(joined * 0.9))
    assert result.verdict is INC and result.gathering
    assert result.lower is not None and result.upper is not None
    assert result.lower < 0.9 < result.upper


@pytest.mark.parametrize(
    ("joined", "agreed"),
    [(1, 1), (1, 0), (7, 5), (50, 49), (300, 255), (300, 285), (5_000, 4_600), (5_000, 4_450)],
)
@pytest.mark.parametrize("min_agreement", [0.5, 0.9, 0.99])
def test_verdict_follows_the_bounds(joined: int, agreed: int, min_agreement: float) -> None:
    result = judged(joined, agreed, min_agreement)
    assert result.value == pytest.approx(agreed / joined)
    assert result.samples == joined
    if result.lower is None or result.upper is None:
        assert result.verdict is INC
        return
    assert 0.0 <= result.lower <= result.value <= result.upper <= 1.0
    if result.verdict is F:
        assert result.upper < min_agreement
    elif result.verdict is P:
        assert result.lower > min_agreement
    else:
        assert result.lower <= min_agreement <= result.upper
        assert result.gathering
        assert result.samples_needed is None or result.samples_needed > joined


def test_inconclusive_says_how_many_joined_requests_it_needs_and_they_suffice() -> None:
    result = judged(100, 97)  # 97 % against 90 %: on its way to passing
    assert result.verdict is INC and result.samples_needed is not None
    assert result.samples_needed > 100 and "candidate samples needed" in result.reason
    # The estimate plans with the variance at the measured share; the test's bound uses the
    # (larger) variance at the limit, so it takes somewhat more than planned (sequential.py).
    n = math.ceil(1.25 * result.samples_needed)
    assert judged(n, math.ceil(n * 0.97)).verdict is P


def test_eta_comes_from_the_pace_of_joined_requests() -> None:
    counts = AgreementCounts(100, 97)
    result = judge_agreement(counts, 0.9, BUDGET, elapsed_seconds=50.0)
    assert result.samples_needed is not None
    assert result.eta_seconds == pytest.approx((result.samples_needed - 100) / 2.0, abs=0.1)
    assert judge_agreement(counts, 0.9, BUDGET).eta_seconds is None
    assert (
        judge_agreement(AgreementCounts(500, 500), 0.9, BUDGET, elapsed_seconds=9).eta_seconds
        is None
    )


def test_a_smaller_budget_widens_the_bounds_and_waits_longer() -> None:
    loose, tight = judged(400, 380, budget=0.1), judged(400, 380, budget=0.001)
    assert tight.lower is not None and loose.lower is not None
    assert tight.upper is not None and loose.upper is not None
    assert tight.lower < loose.lower and tight.upper > loose.upper
    first = {
        b: min(n for n in range(1, 2000) if judged(n, n, budget=b).verdict is P)
        for b in (0.1, 0.05, 0.01)
    }
    assert first[0.1] < first[0.05] < first[0.01]


def test_zero_minimum_allows_anything_once_something_is_joined() -> None:
    assert judged(1, 0, min_agreement=0.0).verdict is P
    assert judge_agreement(AgreementCounts(0, 0), 0.0, BUDGET).verdict is INC


@pytest.mark.parametrize(
    ("min_agreement", "budget", "message"),
    [
        (1.0, 0.05, "minAgreement must be in [0, 1)"),
        (1.5, 0.05, "minAgreement must be in [0, 1)"),
        (-0.1, 0.05, "minAgreement must be in [0, 1)"),
        (math.nan, 0.05, "minAgreement must be in [0, 1)"),
        (0.9, 0.0, "error budget must be in (0, 0.5)"),
        (0.9, 0.5, "error budget must be in (0, 0.5)"),
        (0.9, math.nan, "error budget must be in (0, 0.5)"),
    ],
)
def test_unusable_parameters_are_inconclusive_not_gathering(
    min_agreement: float, budget: float, message: str
) -> None:
    result = judge_agreement(AgreementCounts(1000, 1000), min_agreement, budget)
    assert result.verdict is INC and not result.gathering
    assert message in result.reason


# --- seeded trials: the error rates hold over repeated looks ---------------------------------


def run_trial(
    rng: random.Random, agreement: float, min_agreement: float, looks: int, step: int
) -> tuple[Verdict, int]:
    """Look every ``step`` joined requests; the first decision and when it came."""
    agreed = 0
    for look in range(1, looks + 1):
        agreed += sum(rng.random() < agreement for _ in range(step))
        verdict = judged(look * step, agreed, min_agreement).verdict
        if verdict is not INC:
            return verdict, look * step
    return INC, looks * step


def test_admission_refuses_the_minimum_no_judge_can_ever_pass() -> None:
    """minAgreement 1 is refused by the model (and the CRD generated from it), since the judge
    only passes once it has shown the agreement is above the minimum."""
    assert ShadowSpec.model_validate({"minAgreement": 0.999}).min_agreement == 0.999
    for value in (1, 1.0, 0, 1.5):
        with pytest.raises(ValidationError, match="minAgreement"):
            ShadowSpec.model_validate({"minAgreement": value})
    assert judged(10**6, 10**6, min_agreement=1.0).verdict is INC


def test_identical_predictions_never_fail_and_pass() -> None:
    rng = random.Random(1)
    outcomes = [run_trial(rng, 1.0, 0.95, looks=40, step=25) for _ in range(50)]
    assert all(v is P for v, _ in outcomes)
    assert max(n for _, n in outcomes) <= 250


def test_agreement_at_the_minimum_is_rarely_failed_or_passed_over_many_looks() -> None:
    """The worst case inside the tolerance (and just outside it): true agreement = minimum.
    Failing it is a false rollback, passing it a false promotion; each at most the budget
    over all 60 looks (the bound is conservative, so far fewer in practice)."""
    rng = random.Random(2)
    trials = 300
    outcomes = [run_trial(rng, 0.95, 0.95, looks=60, step=50)[0] for _ in range(trials)]
    slack = 3 * math.sqrt(BUDGET * (1 - BUDGET) / trials)
    assert outcomes.count(F) / trials <= BUDGET + slack
    assert outcomes.count(P) / trials <= BUDGET + slack


def test_ten_points_worse_agreement_is_detected() -> None:
    rng = random.Random(3)
    trials = 200
    outcomes = [run_trial(rng, 0.85, 0.95, looks=40, step=50) for _ in range(trials)]
    assert all(v is not P for v, _ in outcomes)
    caught = [n for v, n in outcomes if v is F]
    assert len(caught) >= 0.99 * trials
    assert sorted(caught)[len(caught) // 2] <= 600  # typically within a few hundred


def test_slightly_better_than_the_minimum_passes_given_enough_samples() -> None:
    rng = random.Random(4)
    outcomes = [run_trial(rng, 0.99, 0.95, looks=40, step=50)[0] for _ in range(100)]
    assert outcomes.count(F) == 0
    assert outcomes.count(P) >= 95


# --- measure_agreement with a source -------------------------------------------------------


class FakeSource:
    """Predictions by release, or an error; records what it was asked."""

    def __init__(self, by_release: dict[str, dict[str, int]], error: str | None = None) -> None:
        self.by_release, self.error = by_release, error
        self.asked: list[tuple[str, str, str, float]] = []

    def predictions(
        self,
        namespace: str,
        model: str,
        release: str,
        since: float,
        *,
        deadline: float | None = None,
    ) -> dict[str, int]:
        self.asked.append((namespace, model, release, since))
        if self.error:
            raise PredictionSourceError(self.error)
        return self.by_release.get(release, {})


def test_measure_joins_both_releases_and_judges() -> None:
    stable = {f"r{i}": i % 2 for i in range(1000)}
    candidate = {f"r{i}": i % 2 for i in range(0, 1000, 2)}  # a 50 % mirror, all agreeing
    source = FakeSource({"v1": stable, "v2": candidate})
    result = measure_agreement(source, "ns", "fraud", "v1", "v2", 100.0, 0.9, BUDGET, now=150.0)
    assert source.asked == [("ns", "fraud", "v1", 100.0), ("ns", "fraud", "v2", 100.0)]
    assert result.verdict is P and result.samples == 500 and result.value == 1.0
    assert "500 stable-only, 0 candidate-only" in result.reason


def test_measure_gives_an_eta_from_the_time_since() -> None:
    source = FakeSource(
        {
            "v1": {f"r{i}": 1 for i in range(100)},
            "v2": {f"r{i}": 1 for i in range(97)} | {f"r{i}": 0 for i in range(97, 100)},
        }
    )
    result = measure_agreement(source, "ns", "m", "v1", "v2", 0.0, 0.9, BUDGET, now=10.0)
    assert result.verdict is INC and result.eta_seconds is not None and result.eta_seconds > 0


def test_measure_with_nothing_joined_is_gathering() -> None:
    source = FakeSource({"v1": {"a": 1}, "v2": {}})
    result = measure_agreement(source, "ns", "m", "v1", "v2", 0.0, 0.9, BUDGET)
    assert result.verdict is INC and result.gathering and "no mirrored request" in result.reason


def test_a_source_error_is_inconclusive_with_its_reason() -> None:
    source = FakeSource({}, error="GET /predictions of pod ns/p-1 (port 8080): HTTP 503: down")
    result = measure_agreement(source, "ns", "m", "v1", "v2", 0.0, 0.9, BUDGET)
    assert result.verdict is INC and not result.gathering
    assert (
        result.reason == "SLO agreement: GET /predictions of pod ns/p-1 (port 8080): HTTP 503: down"
    )
    assert result.threshold == ">= 0.9"


# --- pure helpers of KubePredictionSource --------------------------------------------------


def pod(*containers: list[tuple[str | None, int]]) -> client.V1Pod:
    return client.V1Pod(
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name=f"c{i}",
                    ports=[client.V1ContainerPort(name=n, container_port=p) for n, p in ports]
                    or None,
                )
                for i, ports in enumerate(containers)
            ]
        )
    )


@pytest.mark.parametrize(
    ("containers", "port"),
    [
        ([[]], 8080),
        ([[(None, 9000)]], 9000),
        ([[("metrics", 9090), ("http", 8000)]], 8000),
        ([[("admin", 7000)], [("http", 8081)]], 8081),  # a sidecar's port listed first
        ([[("admin", 7000)], [("grpc", 9000)]], 7000),
    ],
)
def test_pod_port(containers: list[list[tuple[str | None, int]]], port: int) -> None:
    assert pod_port(pod(*containers)) == port


def test_an_answer_parses_to_its_entries() -> None:
    body = (
        b'{"release": "v1", "version": "v1", "predictions": [["a", 1, 2], ["b\\u00e9/3", 0,'
        b' 3.5e0]], "truncated": false}'
    )
    assert parse_predictions(body, 10) == ([("a", 1, 2.0), ("b\u00e9/3", 0, 3.5)], False)
    assert parse_predictions(b' { "truncated" : true , "predictions" : [ ] } \n', 10) == ([], True)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "expected '{'"),
        (b"[]", "expected '{'"),
        (b'{"predictions": {"a": 1}}', "expected '['"),
        (b'{"predictions": [["a", 1]]}', "entry 0 is not"),
        (b'{"predictions": [[1, 1, 1.0]]}', "entry 0 is not"),
        (b'{"predictions": [["a", true, 1.0]]}', "entry 0 is not"),
        (b'{"predictions": [["a", 1.5, 1.0]]}', "entry 0 is not"),
        (b'{"predictions": [["a", 1, "t"]]}', "entry 0 is not"),
        (b'{"predictions": [["a", 1, 1], [[], [], []]]}', "entry 1 is not"),
        (b'{"predictions": [], "truncated": 1}', "'truncated' is 1"),
        (b'{"predictions": [], "extra": [1, 2]}', "'extra' is not a plain value"),
        (b'{"predictions": []} trailing', "more follows"),
        (b'{"predictions": [["a\\x", 1, 1]]}', "Invalid \\escape"),
        (b'{"release": "v1"}', "no 'predictions'"),
        (b'{"predictions": [["a", 1, 1]', "expected ','"),
    ],
)
def test_anything_else_is_refused_saying_where(body: bytes, why: str) -> None:
    with pytest.raises(AnswerError, match="not a list of predictions") as refused:
        parse_predictions(body, 10)
    assert why in str(refused.value)


def test_more_entries_than_the_limit_are_refused() -> None:
    body = b'{"predictions": [' + b",".join(b'["r%d", 1, 1.0]' % i for i in range(11)) + b"]}"
    assert len(parse_predictions(body, 11)[0]) == 11
    with pytest.raises(AnswerTooLargeError, match="more than 10 predictions"):
        parse_predictions(body, 10)


def test_error_text_prefers_the_status_message() -> None:
    status = b'{"kind": "Status", "message": "pods \\"p\\" is forbidden", "code": 403}'
    assert _error_text(status) == 'pods "p" is forbidden'
    assert _error_text(b'{"error": "no such path: /predictions"}') == "no such path: /predictions"
    assert _error_text(b"plain failure\n") == "plain failure"
    assert _error_text(b"") == "(no body)"
    assert len(_error_text(b"x" * 5000)) == 300


def test_kube_source_reports_an_unreachable_api_server() -> None:
    """No API server at all (a closed port): the error names what failed."""
    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"
    configuration.retries = 0
    source = KubePredictionSource(client.ApiClient(configuration), timeout_seconds=2)
    with pytest.raises(PredictionSourceError, match="listing the pods of release v2 in ns"):
        source.predictions("ns", "fraud", "v2", 0.0)
    with pytest.raises(PredictionSourceError, match=r"GET /predictions of pod ns/p \(port 8080\)"):
        source.pod_predictions("ns", "p", 8080, 0.0)
