"""Canary rules for evidence: a proven failure acts at once, overlapping failures count once,
accumulating evidence holds without counting, and a step without enough evidence says so."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from slipway.api import conditions as cond
from slipway.api.models import RolloutPolicy, SLOResult
from slipway.api.phases import Phase, Verdict
from slipway.rollout.gate import error_budget
from tests.unit.factories import T0
from tests.unit.test_rollout_canary import at_step, md, record, tick

SLOS = [{"name": "errors", "errorRate": {}, "threshold": {"maxIncrease": 0.5}, "window": "30s"}]


def seq(verdict: Verdict, gathering: bool = False, **numbers: Any) -> SLOResult:
    return SLOResult(
        slo="errors",
        verdict=verdict,
        judge="sequential",
        gathering=gathering,
        reason=f"SLO errors: {verdict.value}",
        **numbers,
    )


def thr(verdict: Verdict) -> SLOResult:
    return SLOResult(slo="errors", verdict=verdict, judge="threshold", reason="SLO errors: x")


def model(**analysis: Any) -> Any:
    settings = {"interval": "5s", "failureLimit": 1, "inconclusiveLimit": 1, **analysis}
    return md(slos=SLOS, analysis=settings)


def test_a_sequential_failure_rolls_back_at_once_whatever_the_failure_limit() -> None:
    status, deps = at_step(1, 1, 3)
    decision = tick(
        status,
        T0 + timedelta(seconds=3),
        deps,
        analysis=[seq(Verdict.FAIL)],
        model_deployment=model(failureLimit=5),
    )
    assert decision.status.phase is Phase.ROLLED_BACK
    assert "SLO errors: Fail" in (decision.status.message or "")


def test_threshold_failures_of_overlapping_windows_count_once() -> None:
    status, deps = at_step(1, 1, 3)
    first = tick(
        status, T0 + timedelta(seconds=5), deps, [thr(Verdict.FAIL)], model_deployment=model()
    )
    assert first.status.failures == 1 and first.status.phase is Phase.PROGRESSING
    # 10 s later: the 30 s windows overlap, the same requests failed again.
    again = first.status.model_dump(by_alias=True, mode="json")
    second = tick(
        again, T0 + timedelta(seconds=15), deps, [thr(Verdict.FAIL)], model_deployment=model()
    )
    assert second.status.failures == 1 and second.status.phase is Phase.PROGRESSING
    # A window later: new requests, a second failure: past failureLimit 1.
    later = second.status.model_dump(by_alias=True, mode="json")
    third = tick(
        later, T0 + timedelta(seconds=36), deps, [thr(Verdict.FAIL)], model_deployment=model()
    )
    assert third.status.phase is Phase.ROLLED_BACK


def test_evidence_still_accumulating_holds_the_step_without_counting() -> None:
    status, deps = at_step(1, 1, 3)
    status["inconclusives"] = 1
    gathering = seq(Verdict.INCONCLUSIVE, gathering=True, samples=100, samples_needed=900)
    decision = tick(status, T0 + timedelta(seconds=20), deps, [gathering], model_deployment=model())
    assert decision.status.inconclusives == 0
    assert decision.status.phase is Phase.PROGRESSING and decision.status.step == 1


def test_unmeasured_slos_count_toward_the_inconclusive_limit() -> None:
    status, deps = at_step(1, 1, 3)
    status["inconclusives"] = 1
    no_data = seq(Verdict.INCONCLUSIVE, gathering=False)
    decision = tick(status, T0 + timedelta(seconds=20), deps, [no_data], model_deployment=model())
    assert decision.status.inconclusives == 2
    assert decision.status.phase is Phase.PAUSED  # held past inconclusiveLimit 1


def test_the_step_message_says_how_many_samples_and_how_long() -> None:
    status, deps = at_step(1, 1, 3)
    waiting = seq(
        Verdict.INCONCLUSIVE, gathering=True, samples=300, samples_needed=1200, eta_seconds=90
    )
    decision = tick(status, T0 + timedelta(seconds=12), deps, [waiting], model_deployment=model())
    message = decision.status.message or ""
    assert decision.status.step == 1
    assert "errors has 300 of ~1,200 samples, about 1m30s at the current traffic" in message


def test_no_evidence_within_the_deadline_after_the_pause_holds_or_rolls_back() -> None:
    status, deps = at_step(1, 1, 3, analysis=[record(1, "Inconclusive", T0 + timedelta(seconds=5))])
    late = T0 + timedelta(seconds=10) + timedelta(minutes=5, seconds=1)  # pause 10s + 5m deadline
    held = tick(status, late, deps, model_deployment=model(onInconclusive="hold"))
    assert held.status.phase is Phase.PAUSED
    ready = next(c for c in held.status.conditions if c.type == cond.READY)
    assert ready.reason == cond.NOT_ENOUGH_EVIDENCE
    rolled = tick(status, late, deps, model_deployment=model(onInconclusive="rollback"))
    assert rolled.status.phase is Phase.ROLLED_BACK
    # Before the deadline the step just waits.
    early = tick(status, late - timedelta(minutes=1), deps, model_deployment=model())
    assert early.status.phase is Phase.PROGRESSING


def test_the_tier_budget_is_a_ceiling_a_model_may_only_lower() -> None:
    tier = RolloutPolicy.model_validate(
        {"metadata": {"name": "critical"}, "spec": {"analysis": {"falseRollback": 0.01}}}
    )
    assert error_budget(md(), None).false_rollback == 0.05
    assert error_budget(md(), tier).false_rollback == 0.01
    loose = md(analysis={"falseRollback": 0.2})
    assert error_budget(loose, tier).false_rollback == 0.01
    strict = md(analysis={"falseRollback": 0.001, "falsePromotion": 0.02})
    budget = error_budget(strict, tier)
    assert (budget.false_rollback, budget.false_promotion) == (0.001, 0.02)


def test_describe_shows_the_evidence_of_typed_slos_only() -> None:
    from slipway.cli.controls import evidence_line

    typed = {
        "judge": "sequential",
        "value": 0.021,
        "lower": 0.012,
        "upper": 0.034,
        "baseline": 0.01,
        "limit": 0.015,
        "samples": 1234,
        "samplesNeeded": 5600,
        "etaSeconds": 218.6,
    }
    line = evidence_line(typed)
    assert "value 0.021 (bounds 0.012..0.034) vs stable 0.01, limit 0.015" in line
    assert "samples 1,234 of ~5,600 needed (about 219s more at the current traffic)" in line
    assert evidence_line({"verdict": "Pass", "reason": "raw PromQL"}) == ""
