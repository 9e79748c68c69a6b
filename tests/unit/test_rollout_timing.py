"""When the core asks to look at a release again, and what a step says it waits for."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from slipway.api import conditions as cond
from slipway.api.phases import Phase
from slipway.rollout.core import ApplyObject, ScaleDeployment, SetActive, Situation
from slipway.rollout.gate import analysis_due
from slipway.rollout.outcomes import child_refused
from slipway.rollout.release import decide
from tests.unit.factories import T0, deployment, model, release, sibling
from tests.unit.test_rollout_canary import SLOS, at_step, md, record, tick
from tests.unit.test_rollout_canary import STEPS as CANARY

STEPS = CANARY["steps"]


def test_pause_end_is_the_next_look_while_the_step_waits() -> None:
    status, deps = at_step(1, 1, 3, analysis=[record(1, "Pass", T0 + timedelta(seconds=2))])
    decision = tick(status, T0 + timedelta(seconds=3), deps)
    # The pause (10s from T0) ends before the next analysis (2s + 5s interval)? No: 7s first.
    assert decision.look_again_at == T0 + timedelta(seconds=7)


def test_analysis_due_time_is_the_next_look_after_the_pause() -> None:
    status, deps = at_step(1, 1, 3, analysis=[record(1, "Fail", T0 + timedelta(seconds=9))])
    status["failures"] = 0
    decision = tick(status, T0 + timedelta(seconds=11), deps)
    assert decision.status.step == 1
    assert decision.look_again_at == T0 + timedelta(seconds=14)


def test_deadline_is_a_look_while_the_weight_is_not_reached() -> None:
    status, deps = at_step(1, 0, 4, reached=None)
    deps["fraud-v2"] = deployment("fraud-v2", ready=0, replicas=1)
    spec: dict[str, Any] = {"progressDeadline": "4s", "analysis": {"interval": "1m"}}
    decision = tick(status, T0 + timedelta(seconds=1), deps, model_deployment=md(**spec))
    assert decision.status.phase is Phase.PROGRESSING
    assert T0 + timedelta(seconds=4) < decision.look_again_at <= T0 + timedelta(seconds=5)


def test_a_release_in_flight_is_looked_at_within_the_safety_net() -> None:
    status, deps = at_step(1, 1, 3, reached=None)
    spec: dict[str, Any] = {"progressDeadline": "1h", "analysis": {"interval": "1h"}}
    decision = tick(status, T0, deps, model_deployment=md(**spec))
    assert decision.look_again_at == T0 + timedelta(seconds=10)


def test_finished_and_waiting_releases_need_no_timer() -> None:
    done = tick({"phase": "Succeeded"}, T0)
    assert done.look_again_at is None
    blocked = decide(
        Situation(
            release=release(strategy="canary"),
            model=model(stable="fraud-v1", active="fraud-v3"),
            siblings=(sibling("fraud-v3", "Progressing"),),
            deployments={},
            now=T0,
        )
    )
    assert blocked.status.phase is Phase.PENDING and blocked.look_again_at is None


def test_a_freeze_window_is_looked_at_when_it_ends() -> None:
    from slipway.api.models import RolloutPolicy

    end = T0 + timedelta(hours=2)
    policy = RolloutPolicy.model_validate(
        {
            "metadata": {"name": "low"},
            "spec": {
                "freezeWindows": [
                    {"start": (T0 - timedelta(hours=1)).isoformat(), "end": end.isoformat()}
                ]
            },
        }
    )
    decision = decide(
        Situation(
            release=release(strategy="canary"),
            model=model(stable="fraud-v1", tier="low"),
            siblings=(),
            deployments={},
            now=T0,
            policy=policy,
        )
    )
    assert decision.status.phase is Phase.PENDING
    assert decision.look_again_at == end


def test_a_step_without_slos_advances_on_its_pause_alone_and_says_so() -> None:
    bare = md(slos=[])
    status, deps = at_step(1, 1, 3)
    waiting = tick(status, T0 + timedelta(seconds=3), deps, model_deployment=bare)
    assert "no SLOs to analyse" in (waiting.status.message or "")
    assert "analysis" not in (waiting.status.message or "").replace("no SLOs to analyse", "")
    advanced = tick(status, T0 + timedelta(seconds=10), deps, model_deployment=bare)
    assert advanced.status.step == 2


def test_no_analysis_is_due_without_slos_or_for_first_and_direct_releases() -> None:
    def due(model_deployment: Any, strategy: str) -> bool:
        status = {"phase": "Progressing", "step": 1, "strategy": strategy, "steps": STEPS}
        return analysis_due(
            Situation(
                release=release(strategy=strategy, status=status),
                model=model_deployment,
                siblings=(),
                deployments={"fraud-v2": deployment("fraud-v2", ready=1, replicas=1)},
                now=T0,
            )
        )

    assert due(md(), "canary") is True
    assert due(md(slos=[]), "canary") is False
    assert due(md(), "direct") is False
    first = model(active="fraud-v2", slos=SLOS, replicas=4)
    assert due(first, "canary") is False


def test_pause_done_without_a_fresh_analysis_says_it_waits_for_one() -> None:
    status, deps = at_step(1, 1, 3, analysis=[record(1, "Pass", T0)])
    decision = tick(status, T0 + timedelta(seconds=12), deps)
    assert decision.status.step == 1
    assert "waiting for the first analysis at this weight" in (decision.status.message or "")


def test_a_refused_child_fails_the_release_and_puts_the_stable_back() -> None:
    status, deps = at_step(1, 1, 3)
    situation = Situation(
        release=release(strategy="canary", status=status),
        model=md(),
        siblings=(),
        deployments=deps,
        now=T0,
    )
    decision = child_refused(situation, "Deployment 'fraud-fraud-v2': spec.template invalid")
    assert decision.status.phase is Phase.FAILED
    assert "spec.template invalid" in (decision.status.message or "")
    assert "stable 'fraud-v1' keeps serving" in (decision.status.message or "")
    ready = next(c for c in decision.status.conditions if c.type == cond.READY)
    assert ready.reason == cond.CHILD_REFUSED
    assert ScaleDeployment("fraud-fraud-v2", 0) in decision.actions
    assert ScaleDeployment("fraud-fraud-v1", 4) in decision.actions
    assert SetActive(None) in decision.actions
    assert not any(isinstance(a, ApplyObject) for a in decision.actions)
