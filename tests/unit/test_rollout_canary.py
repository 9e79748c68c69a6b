"""The canary decision core: steps, weights, analysis gates, rollback, promotion, controls."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from slipway.api import conditions as cond
from slipway.api import constants as c
from slipway.api.models import ReleaseRecord, SLOResult
from slipway.api.phases import Phase, Verdict
from slipway.kube.children import build_service
from slipway.kube.fingerprint import service_fingerprint
from slipway.kube.observe import DeploymentState
from slipway.rollout.core import (
    ApplyObject,
    Decision,
    RecordStable,
    ScaleDeployment,
    SetActive,
    SetServing,
    Situation,
)
from slipway.rollout.gate import analysis_due
from slipway.rollout.release import decide
from slipway.traffic.replicas import split_replicas
from tests.unit.factories import T0, deployment, model, release

STEPS = {"steps": [{"weight": 25, "pause": "10s"}, {"weight": 50, "pause": "10s"}]}
ANALYSIS = {"interval": "5s", "failureLimit": 0, "inconclusiveLimit": 1}


SLOS = [{"name": "latency", "query": "latency", "threshold": {"max": 0.25}}]


def md(**spec: Any) -> Any:
    defaults: dict[str, Any] = {
        "canary": STEPS,
        "analysis": ANALYSIS,
        "replicas": 4,
        "slos": SLOS,
    }
    defaults.update(spec)
    return model(stable="fraud-v1", active="fraud-v2", **defaults)


def result(verdict: Verdict, slo: str = "latency") -> SLOResult:
    return SLOResult(
        slo=slo, verdict=verdict, value=0.3, threshold="<= 0.25", reason=f"SLO {slo}: {verdict}"
    )


UNPINNED = {"fraud": service_fingerprint(build_service(md(), None))}
"""The model's Service read back selecting every pod of the model."""


def tick(
    status: dict[str, Any] | None = None,
    now: datetime = T0,
    deployments: dict[str, DeploymentState] | None = None,
    analysis: list[SLOResult] | None = None,
    annotations: dict[str, str] | None = None,
    model_deployment: Any = None,
    services: dict[str, str] | None = None,
) -> Decision:
    """One tick; the model's Service is read back as the model pass keeps it (every pod of
    the model) unless ``services`` says otherwise."""
    rel = release(strategy="canary", status=status or {})
    if annotations:
        rel.metadata.annotations = annotations
    return decide(
        Situation(
            release=rel,
            model=model_deployment or md(),
            siblings=(),
            deployments=deployments
            if deployments is not None
            else {"fraud-v1": deployment("fraud-v1", ready=4, replicas=4)},
            now=now,
            analysis=analysis,
            services=UNPINNED if services is None else services,
        )
    )


def at_step(
    step: int, cand: int, stable: int, reached: datetime | None = T0, **extra: Any
) -> tuple[dict[str, Any], dict[str, DeploymentState]]:
    status = {
        "phase": "Progressing",
        "strategy": "canary",
        "steps": STEPS["steps"],
        "step": step,
        "startedAt": T0.isoformat(),
        "stepStartedAt": T0.isoformat(),
        **({"weightReachedAt": reached.isoformat()} if reached else {}),
        **extra,
    }
    deps = {
        "fraud-v1": deployment("fraud-v1", ready=stable, replicas=stable),
        "fraud-v2": deployment("fraud-v2", ready=cand, replicas=cand),
    }
    return status, deps


def record(step: int, verdict: str, at: datetime) -> dict[str, Any]:
    return {"at": at.isoformat(), "step": step, "verdict": verdict, "slos": []}


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [
        (4, 25, (1, 3)),
        (4, 50, (2, 2)),
        (4, 75, (3, 1)),
        (4, 99, (4, 1)),  # never zero stable pods during steps
        (10, 10, (1, 9)),
        (10, 5, (1, 9)),  # at least one candidate pod
        (1, 25, (1, 1)),  # the stable keeps one pod until promotion
        (3, 50, (2, 1)),
        (2, 99, (2, 1)),
    ],
)
def test_split_replicas(total: int, weight: int, expected: tuple[int, int]) -> None:
    assert split_replicas(total, weight) == expected


def test_start_creates_candidate_for_first_step_and_shrinks_stable() -> None:
    decision = tick()
    assert decision.status.phase == Phase.PROGRESSING
    assert decision.status.step == 1 and decision.status.step_label == "1/2"
    assert decision.status.desired_weight == 25
    applied = [a for a in decision.actions if isinstance(a, ApplyObject)]
    assert applied[0].body["spec"]["replicas"] == 1
    assert ScaleDeployment("fraud-fraud-v1", 3) in decision.actions


def test_achieved_weight_is_reported_not_desired() -> None:
    status, deps = at_step(1, cand=1, stable=3, reached=None)
    deps["fraud-v2"] = deployment("fraud-v2", ready=0, replicas=1)
    decision = tick(status, deployments=deps)
    assert decision.status.weight == 0
    assert decision.status.desired_weight == 25
    assert "waiting for weight 25%" in (decision.status.message or "")
    assert decision.status.weight_reached_at is None


def test_weight_reached_starts_the_pause() -> None:
    status, deps = at_step(1, cand=1, stable=3, reached=None)
    decision = tick(status, now=T0 + timedelta(seconds=3), deployments=deps)
    assert decision.status.weight == 25
    assert decision.status.weight_reached_at == T0 + timedelta(seconds=3)


def test_step_does_not_advance_before_pause_even_if_passing() -> None:
    status, deps = at_step(1, 1, 3)
    decision = tick(status, T0 + timedelta(seconds=5), deps, analysis=[result(Verdict.PASS)])
    assert decision.status.step == 1
    # The pause end is a fixed time, so the message does not change every tick.
    assert "pause 10s until 12:00:10Z" in (decision.status.message or "")


def test_step_does_not_advance_without_analysis() -> None:
    status, deps = at_step(1, 1, 3)
    decision = tick(status, T0 + timedelta(seconds=30), deps)
    assert decision.status.step == 1


def test_step_does_not_advance_when_last_analysis_inconclusive() -> None:
    status, deps = at_step(
        1,
        1,
        3,
        analysis=[
            record(1, "Pass", T0 + timedelta(seconds=2)),
            record(1, "Inconclusive", T0 + timedelta(seconds=8)),
        ],
        inconclusives=1,
    )
    decision = tick(status, T0 + timedelta(seconds=12), deps)
    assert decision.status.step == 1


def test_analysis_from_before_the_weight_was_reached_does_not_count() -> None:
    status, deps = at_step(
        1, 1, 3, reached=T0 + timedelta(seconds=5), analysis=[record(1, "Pass", T0)]
    )
    decision = tick(status, T0 + timedelta(seconds=20), deps)
    assert decision.status.step == 1


def test_pause_elapsed_with_passing_analysis_advances_and_acts_at_once() -> None:
    status, deps = at_step(1, 1, 3)
    decision = tick(status, T0 + timedelta(seconds=10), deps, analysis=[result(Verdict.PASS)])
    assert decision.status.step == 2
    assert decision.status.step_label == "2/2"
    assert decision.status.weight_reached_at is None
    assert ScaleDeployment("fraud-fraud-v2", 2) in decision.actions
    assert ScaleDeployment("fraud-fraud-v1", 2) in decision.actions
    assert len(decision.status.analysis) == 1, "the tick's analysis is recorded once"


def test_failure_past_limit_rolls_back_at_once() -> None:
    status, deps = at_step(2, 2, 2)
    decision = tick(status, T0 + timedelta(seconds=3), deps, analysis=[result(Verdict.FAIL)])
    assert decision.status.phase == Phase.ROLLED_BACK
    assert decision.status.weight == 0
    assert ScaleDeployment("fraud-fraud-v2", 0) in decision.actions
    assert ScaleDeployment("fraud-fraud-v1", 4) in decision.actions
    assert SetActive(None) in decision.actions
    message = decision.status.message or ""
    assert "SLO latency" in message and "1 failed analyses (limit 0;" in message
    assert "'fraud-v1' keeps serving" in message
    ready = next(x for x in decision.status.conditions if x.type == cond.READY)
    assert ready.reason == cond.SLO_FAILED


def test_failures_within_limit_continue() -> None:
    status, deps = at_step(1, 1, 3)
    decision = tick(
        status,
        T0 + timedelta(seconds=3),
        deps,
        analysis=[result(Verdict.FAIL)],
        model_deployment=md(analysis={**ANALYSIS, "failureLimit": 1}),
    )
    assert decision.status.phase == Phase.PROGRESSING
    assert decision.status.failures == 1
    assert decision.status.verdict == Verdict.FAIL


def test_inconclusive_past_limit_holds_by_default() -> None:
    status, deps = at_step(1, 1, 3, inconclusives=1)
    decision = tick(
        status, T0 + timedelta(seconds=30), deps, analysis=[result(Verdict.INCONCLUSIVE)]
    )
    assert decision.status.phase == Phase.PAUSED
    assert decision.status.step == 1, "inconclusive is never a pass"
    assert decision.status.inconclusives == 2
    ready = next(x for x in decision.status.conditions if x.type == cond.READY)
    assert ready.reason == cond.HELD_INCONCLUSIVE
    assert not any(isinstance(a, ScaleDeployment) and a.replicas == 0 for a in decision.actions)


def test_held_release_stays_held_between_analyses() -> None:
    status, deps = at_step(1, 1, 3, inconclusives=2, phase="Paused")
    decision = tick(status, T0 + timedelta(seconds=31), deps)
    assert decision.status.phase == Phase.PAUSED


def test_held_release_resumes_when_analysis_passes() -> None:
    status, deps = at_step(1, 1, 3, inconclusives=2, phase="Paused")
    decision = tick(status, T0 + timedelta(seconds=31), deps, analysis=[result(Verdict.PASS)])
    assert decision.status.inconclusives == 0
    assert decision.status.phase == Phase.PROGRESSING
    assert decision.status.step == 2  # pause long over and the analysis passed


def test_inconclusive_past_limit_rolls_back_when_configured() -> None:
    status, deps = at_step(1, 1, 3, inconclusives=1)
    decision = tick(
        status,
        T0 + timedelta(seconds=30),
        deps,
        analysis=[result(Verdict.INCONCLUSIVE)],
        model_deployment=md(analysis={**ANALYSIS, "onInconclusive": "rollback"}),
    )
    assert decision.status.phase == Phase.ROLLED_BACK
    ready = next(x for x in decision.status.conditions if x.type == cond.READY)
    assert ready.reason == cond.INCONCLUSIVE_LIMIT


def test_analysis_history_is_bounded() -> None:
    history = [record(1, "Pass", T0 + timedelta(seconds=i)) for i in range(40)]
    status, deps = at_step(1, 1, 3, analysis=history)
    decision = tick(status, T0 + timedelta(seconds=1), deps, analysis=[result(Verdict.PASS)])
    assert len(decision.status.analysis) == 30
    assert decision.status.analysis[-1].at == T0 + timedelta(seconds=1)


def test_after_last_step_promotes_candidate_to_full_size() -> None:
    status, deps = at_step(2, 2, 2)
    decision = tick(status, T0 + timedelta(seconds=10), deps, analysis=[result(Verdict.PASS)])
    assert decision.status.step == 3 and decision.status.step_label == "promoting"
    assert ScaleDeployment("fraud-fraud-v2", 4) in decision.actions
    assert not any(isinstance(a, RecordStable) for a in decision.actions)
    assert decision.status.phase == Phase.PROGRESSING


def test_promotion_completes_when_candidate_available_and_old_stable_scales_down() -> None:
    status, deps = at_step(3, 4, 2)
    decision = tick(status, T0 + timedelta(seconds=1), deps)
    assert decision.status.phase == Phase.SUCCEEDED
    kinds = [type(a) for a in decision.actions]
    assert RecordStable in kinds
    assert ScaleDeployment("fraud-fraud-v1", 0) in decision.actions
    assert kinds.index(RecordStable) < kinds.index(ScaleDeployment)
    # Promotion never re-applies the candidate (its pod template is untouched).
    assert not any(isinstance(a, ApplyObject) for a in decision.actions)


def test_the_old_stable_shrinks_only_once_the_service_read_back_reaches_the_new_one() -> None:
    status, deps = at_step(3, 4, 2)
    pinned = {"fraud": service_fingerprint(build_service(md(), "fraud-v1"))}
    for services in (pinned, {}):  # still pinned to v1 (a blue-green's), or not read yet
        decision = tick(status, T0 + timedelta(seconds=1), deps, services=services)
        assert decision.status.phase == Phase.SUCCEEDED
        assert not any(isinstance(a, ScaleDeployment) for a in decision.actions)


def test_manual_promote_skips_remaining_steps() -> None:
    status, deps = at_step(1, 1, 3)
    decision = tick(
        status, T0 + timedelta(seconds=1), deps, annotations={c.ANNOTATION_ACTION: "promote"}
    )
    assert decision.status.step_label == "promoting"
    assert ScaleDeployment("fraud-fraud-v2", 4) in decision.actions
    assert "promoted by annotation" in (decision.status.message or "")


def test_manual_abort_rolls_back() -> None:
    status, deps = at_step(1, 1, 3)
    decision = tick(
        status, T0 + timedelta(seconds=1), deps, annotations={c.ANNOTATION_ACTION: "abort"}
    )
    assert decision.status.phase == Phase.ROLLED_BACK
    assert ScaleDeployment("fraud-fraud-v2", 0) in decision.actions
    ready = next(x for x in decision.status.conditions if x.type == cond.READY)
    assert ready.reason == cond.ABORTED


def test_manual_pause_holds_the_step() -> None:
    status, deps = at_step(1, 1, 3)
    decision = tick(
        status,
        T0 + timedelta(seconds=30),
        deps,
        analysis=[result(Verdict.PASS)],
        annotations={c.ANNOTATION_PAUSED: "true"},
    )
    assert decision.status.phase == Phase.PAUSED
    assert decision.status.step == 1
    ready = next(x for x in decision.status.conditions if x.type == cond.READY)
    assert ready.reason == cond.PAUSED_MANUALLY


def test_resume_after_manual_pause_continues() -> None:
    status, deps = at_step(
        1, 1, 3, phase="Paused", analysis=[record(1, "Pass", T0 + timedelta(seconds=20))]
    )
    decision = tick(
        status, T0 + timedelta(seconds=30), deps, annotations={c.ANNOTATION_PAUSED: "false"}
    )
    assert decision.status.phase == Phase.PROGRESSING
    assert decision.status.step == 2


def test_unknown_action_is_reported_not_guessed() -> None:
    status, deps = at_step(1, 1, 3)
    decision = tick(
        status, T0 + timedelta(seconds=1), deps, annotations={c.ANNOTATION_ACTION: "yolo"}
    )
    assert decision.status.phase == Phase.PROGRESSING
    assert "not one of promote, abort" in (decision.status.message or "")


def test_step_weight_never_reached_rolls_back_after_deadline() -> None:
    status, deps = at_step(1, 1, 3, reached=None)
    deps["fraud-v2"] = deployment("fraud-v2", ready=0, replicas=1)
    decision = tick(
        status, T0 + timedelta(minutes=6), deps, model_deployment=md(progressDeadline="5m")
    )
    assert decision.status.phase == Phase.ROLLED_BACK
    ready = next(x for x in decision.status.conditions if x.type == cond.READY)
    assert ready.reason == cond.PROGRESS_DEADLINE_EXCEEDED


def test_release_steps_override_model_steps() -> None:
    rel_steps = {"steps": [{"weight": 50, "pause": "1s"}]}
    rel = release(strategy="canary", canary=rel_steps)
    decision = decide(
        Situation(
            release=rel,
            model=md(),
            siblings=(),
            deployments={"fraud-v1": deployment("fraud-v1", ready=4, replicas=4)},
            now=T0,
        )
    )
    assert decision.status.step_label == "1/1"
    assert decision.status.desired_weight == 50


@pytest.mark.parametrize(
    ("phase", "last_seconds", "ready", "expected"),
    [
        ("Progressing", None, 1, True),
        ("Progressing", 5, 1, True),
        ("Progressing", 4, 1, False),
        ("Progressing", None, 0, False),
        ("Paused", 6, 1, True),
        ("Pending", None, 1, False),
        ("Succeeded", None, 1, False),
    ],
)
def test_analysis_due(phase: str, last_seconds: int | None, ready: int, expected: bool) -> None:
    analysis = [record(1, "Pass", T0)] if last_seconds is not None else []
    now = T0 + timedelta(seconds=last_seconds or 0)
    status = {
        "phase": phase,
        "step": 1,
        "strategy": "canary",
        "steps": STEPS["steps"],
        "analysis": analysis,
    }
    rel = release(strategy="canary", status=status)
    situation = Situation(
        release=rel,
        model=md(),
        siblings=(),
        deployments={"fraud-v2": deployment("fraud-v2", ready=ready, replicas=1)},
        now=now,
    )
    assert analysis_due(situation) is expected


def test_no_analysis_while_promoting() -> None:
    rel = release(strategy="canary", status={"phase": "Progressing", "step": 3})
    situation = Situation(
        release=rel,
        model=md(),
        siblings=(),
        deployments={"fraud-v2": deployment("fraud-v2", ready=4, replicas=4)},
        now=T0,
    )
    assert analysis_due(situation) is False


def test_steady_state_emits_no_actions() -> None:
    status, deps = at_step(1, 1, 3)
    decision = tick(status, T0 + timedelta(seconds=2), deps)
    assert decision.actions == []


def test_lost_weight_restarts_the_step() -> None:
    status, deps = at_step(1, 1, 3, analysis=[record(1, "Pass", T0 + timedelta(seconds=5))])
    deps["fraud-v2"] = deployment("fraud-v2", ready=0, replicas=1)  # its pod restarted
    later = T0 + timedelta(hours=1)
    decision = tick(status, later, deps)
    assert decision.status.phase == Phase.PROGRESSING, "no deadline rollback for a flap"
    assert decision.status.weight_reached_at is None
    assert decision.status.step_started_at == later
    # Back at weight: the old Pass from before the loss no longer counts.
    back = decision.status.model_dump(by_alias=True, mode="json", exclude_none=True)
    deps["fraud-v2"] = deployment("fraud-v2", ready=1, replicas=1)
    again = tick(back, later + timedelta(seconds=30), deps)
    assert again.status.step == 1


def test_steps_are_recorded_at_start_and_later_edits_do_not_move_the_release() -> None:
    first = tick()
    assert [s.weight for s in first.status.steps or []] == [25, 50]
    status = first.status.model_dump(by_alias=True, mode="json", exclude_none=True)
    shrunk = md(canary={"steps": [{"weight": 10}]})
    decision = tick(status, T0 + timedelta(seconds=1), model_deployment=shrunk)
    assert decision.status.step_label == "1/2"


def test_promotion_that_never_completes_rolls_back_after_the_deadline() -> None:
    status, deps = at_step(3, 2, 2)
    deps["fraud-v2"] = deployment("fraud-v2", ready=2, replicas=4)
    decision = tick(
        status, T0 + timedelta(minutes=6), deps, model_deployment=md(progressDeadline="5m")
    )
    assert decision.status.phase == Phase.ROLLED_BACK
    assert "while promoting" in (decision.status.message or "")


def test_manual_promote_starts_the_promotion_clock() -> None:
    status, deps = at_step(1, 1, 3)
    now = T0 + timedelta(hours=2)
    decision = tick(status, now, deps, annotations={c.ANNOTATION_ACTION: "promote"})
    assert decision.status.step_started_at == now
    assert decision.status.phase == Phase.PROGRESSING


def test_a_canary_step_the_gateway_never_took_rolls_back_naming_the_generation() -> None:
    from slipway.kube.children import build_release_service
    from slipway.traffic import gatewayapi
    from slipway.traffic.routes import RoutePlan, route_body

    m = md(router="gatewayAPI", gatewayAPI={"parentRefs": [{"name": "web"}]}, progressDeadline="1m")
    body = route_body(m, RoutePlan((("fraud-v1", 75), ("fraud-v2", 25))), gatewayapi.build)
    body["metadata"]["generation"] = 4
    body["status"] = {
        "parents": [
            {
                "parentRef": {"name": "web"},
                "conditions": [{"type": "Accepted", "status": "True", "observedGeneration": 3}],
            }
        ]
    }
    own = [build_release_service(m, r) for r in ("fraud-v1", "fraud-v2")]
    rel = release(
        strategy="canary",
        status={
            "phase": "Progressing",
            "step": 1,
            "startedAt": T0.isoformat(),
            "stepStartedAt": T0.isoformat(),
            "steps": [{"weight": 25, "pause": "1m"}],
        },
    )
    deps = {
        "fraud-v1": deployment("fraud-v1", ready=4, replicas=4),
        "fraud-v2": deployment("fraud-v2", ready=1, replicas=1),
    }
    decision = decide(
        Situation(
            release=rel,
            model=m,
            siblings=(),
            deployments=deps,
            now=T0 + timedelta(minutes=2),
            route=gatewayapi.observe(body),
            services={b["metadata"]["name"]: service_fingerprint(b) for b in own},
        )
    )
    assert decision.status.phase == Phase.ROLLED_BACK
    assert (decision.status.message or "").startswith(
        "rolled back: step 1/1 did not reach weight 25% within progressDeadline 1m:"
        " HTTPRoute 'fraud' generation 4 has no status from its data plane yet"
        " (Gateway web last answered generation 3)"
    )


# --- a third release's pods behind the Service (a stray previous stable) ----------------


def with_stray(step: int, cand: int, stable: int, stray: int) -> dict[str, DeploymentState]:
    _, deps = at_step(step, cand, stable)
    deps["fraud-v0"] = deployment("fraud-v0", ready=stray, replicas=stray)
    return deps


def test_a_stray_previous_stables_pods_count_in_the_reported_share() -> None:
    status, _ = at_step(1, 1, 3, reached=None)
    decision = tick(status, deployments=with_stray(1, 1, 3, 1))
    assert decision.status.weight == 20  # 1 of 5 ready pods, not 1 of 4
    assert decision.status.weight_reached_at is None
    assert "fraud-fraud-v0 (1 ready)" in (decision.status.message or "")


def test_a_step_reached_before_a_stray_appeared_is_lost_and_starts_over() -> None:
    status, _ = at_step(1, 1, 3)
    later = T0 + timedelta(seconds=30)
    decision = tick(status, later, with_stray(1, 1, 3, 1), analysis=[result(Verdict.PASS)])
    assert decision.status.step == 1, "a step must not advance on a split it did not have"
    assert decision.status.weight_reached_at is None
    assert decision.status.step_started_at == later


def test_a_stray_scaled_to_zero_whose_pod_is_still_ready_still_counts() -> None:
    status, _ = at_step(1, 1, 3, reached=None)
    deps = with_stray(1, 1, 3, 0)
    deps["fraud-v0"] = deployment("fraud-v0", ready=1, replicas=0)
    decision = tick(status, deployments=deps)
    assert decision.status.weight == 20 and decision.status.weight_reached_at is None


def test_the_step_is_reached_once_the_stray_is_gone() -> None:
    status, _ = at_step(1, 1, 3, reached=None)
    decision = tick(status, deployments=with_stray(1, 1, 3, 0))
    assert decision.status.weight == 25
    assert decision.status.weight_reached_at == T0


def test_promotion_waits_for_a_strays_pods_to_go() -> None:
    status, _ = at_step(3, 4, 2)
    decision = tick(status, T0 + timedelta(seconds=1), with_stray(3, 4, 2, 1))
    assert decision.status.phase == Phase.PROGRESSING
    assert not any(isinstance(a, RecordStable) for a in decision.actions)


# --- a promotion cut short by a restart is finished, whatever was left undone ----------------


def recorded(md: Any, *names: str) -> Any:
    md.status.stable_release = names[0]
    md.status.history = [
        ReleaseRecord(release=n, version=n, uri=f"s3://m/{n}", strategy="canary", promoted_at=T0)
        for n in names
    ]
    return md


def test_restart_after_the_record_still_scales_the_previous_stable_to_zero() -> None:
    # The record of fraud-v2 as the stable landed; the release's status and the
    # scale-down of fraud-v1 did not.
    status, deps = at_step(3, 4, 4)
    md_ = recorded(md(), "fraud-v2", "fraud-v1")
    decision = tick(status, T0, deps, model_deployment=md_)
    assert decision.status.phase == Phase.SUCCEEDED
    assert decision.actions == [SetActive(None), ScaleDeployment("fraud-fraud-v1", 0)]


def test_restart_after_everything_but_the_status_writes_nothing_more() -> None:
    status, deps = at_step(3, 4, 0)
    md_ = recorded(md(), "fraud-v2", "fraud-v1")
    md_.status.active_release = None
    decision = tick(status, T0, deps, model_deployment=md_)
    assert decision.status.phase == Phase.SUCCEEDED
    assert decision.actions == []


def test_restart_after_the_record_moves_a_service_still_pinned_elsewhere() -> None:
    status, deps = at_step(3, 4, 4)
    md_ = recorded(md(), "fraud-v2", "fraud-v1")
    md_.status.serving = "fraud-v1"
    decision = tick(status, T0, deps, model_deployment=md_)
    assert SetServing("fraud-v2") in decision.actions
    served = [a for a in decision.actions if isinstance(a, ApplyObject)]
    assert served and served[0].body["spec"]["selector"][c.LABEL_RELEASE] == "fraud-v2"
    # fraud-v1 shrinks only once the Service is read back selecting fraud-v2.
    assert ScaleDeployment("fraud-fraud-v1", 0) not in decision.actions
    md_.status.serving = "fraud-v2"
    moved = {"fraud": service_fingerprint(build_service(md_, "fraud-v2"))}
    decision = tick(status, T0, deps, model_deployment=md_, services=moved)
    assert decision.actions == [SetActive(None), ScaleDeployment("fraud-fraud-v1", 0)]


@pytest.mark.parametrize(
    "history", [("fraud-v2",), ("fraud-v1", "fraud-v0"), ("fraud-v2", "fraud-v2")]
)
def test_restart_after_the_record_never_scales_down_on_a_history_it_cannot_read(
    history: tuple[str, ...],
) -> None:
    # First release (nothing below it), a history that does not start with this release,
    # or one naming it twice: there is no previous stable to retire.
    status, deps = at_step(3, 4, 4)
    md_ = recorded(md(), *history)
    md_.status.stable_release = "fraud-v2"
    decision = tick(status, T0, deps, model_deployment=md_)
    assert not any(isinstance(a, ScaleDeployment) and a.replicas == 0 for a in decision.actions)


# ---------------------------------------------------------------- exposure while undecided

TYPED_SLOS = [
    {"name": "errors", "errorRate": {}, "threshold": {"maxIncrease": 0.02, "relative": "absolute"}},
    {
        "name": "accuracy",
        "ratio": {"better": "higher"},
        "threshold": {"maxDecrease": 0.05, "relative": "absolute"},
    },
]
CAREFUL = {**ANALYSIS, "undecidedWeight": 25, "maxUndecided": "30m"}
FOUR_STEPS = {
    "steps": [
        {"weight": 25, "pause": "10s"},
        {"weight": 50, "pause": "10s"},
        {"weight": 75, "pause": "10s"},
    ]
}


def gathering(slo: str, value: float, limit: float) -> SLOResult:
    """A sequential judge's open verdict: the estimate and the limit its bound is held to."""
    return SLOResult(
        slo=slo,
        verdict=Verdict.INCONCLUSIVE,
        value=value,
        limit=limit,
        threshold="t",
        reason=f"SLO {slo}: gathering",
        judge="sequential",
        gathering=True,
    )


def careful(**analysis: Any) -> Any:
    return md(slos=TYPED_SLOS, canary=FOUR_STEPS, analysis={**CAREFUL, **analysis})


def at_step_two(**extra: Any) -> tuple[dict[str, Any], dict[str, DeploymentState]]:
    status, deps = at_step(2, 2, 2, **extra)
    status["steps"] = FOUR_STEPS["steps"]
    return status, deps


def test_leaning_error_rate_lowers_the_weight_and_says_why() -> None:
    status, deps = at_step_two()
    now = T0 + timedelta(seconds=5)
    decision = tick(
        status,
        now=now,
        deployments=deps,
        analysis=[gathering("errors", 0.035, 0.03)],
        model_deployment=careful(),
    )
    assert decision.status.undecided_since == now
    assert decision.status.desired_weight == 25
    assert ScaleDeployment("fraud-fraud-v2", 1) in decision.actions
    ready = next(c for c in decision.status.conditions if c.type == cond.READY)
    assert "lowered to 25% from the step's 50%" in (decision.status.message or "")
    assert "leaned toward a regression since 12:00:05Z" in (decision.status.message or "")
    assert decision.status.phase == Phase.PROGRESSING
    assert ready.status == "True"


def test_reached_lowered_weight_reports_leaning_reason() -> None:
    since = T0 + timedelta(seconds=5)
    status, deps = at_step_two(undecidedSince=since.isoformat())
    deps["fraud-v2"] = deployment("fraud-v2", ready=1, replicas=1)
    deps["fraud-v1"] = deployment("fraud-v1", ready=3, replicas=3)
    decision = tick(
        status, now=T0 + timedelta(seconds=10), deployments=deps, model_deployment=careful()
    )
    reason = next(c.reason for c in decision.status.conditions if c.type == cond.READY)
    assert reason == cond.LEANING_TO_REGRESSION
    assert decision.status.weight == 25


def test_accuracy_below_its_limit_leans_but_above_does_not() -> None:
    status, deps = at_step_two()
    low = tick(
        status,
        now=T0 + timedelta(seconds=5),
        deployments=deps,
        analysis=[gathering("accuracy", 0.84, 0.85)],
        model_deployment=careful(),
    )
    assert low.status.undecided_since is not None
    high = tick(
        status,
        now=T0 + timedelta(seconds=5),
        deployments=deps,
        analysis=[gathering("accuracy", 0.86, 0.85)],
        model_deployment=careful(),
    )
    assert high.status.undecided_since is None
    assert high.status.desired_weight == 50


def test_error_rate_within_its_limit_does_not_lean() -> None:
    status, deps = at_step_two()
    decision = tick(
        status,
        now=T0 + timedelta(seconds=5),
        deployments=deps,
        analysis=[gathering("errors", 0.02, 0.03)],
        model_deployment=careful(),
    )
    assert decision.status.undecided_since is None
    assert decision.status.desired_weight == 50


def test_nothing_is_tracked_without_either_limit() -> None:
    status, deps = at_step_two()
    decision = tick(
        status,
        now=T0 + timedelta(seconds=5),
        deployments=deps,
        analysis=[gathering("errors", 0.035, 0.03)],
        model_deployment=md(slos=TYPED_SLOS, canary=FOUR_STEPS),
    )
    assert decision.status.undecided_since is None
    assert decision.status.desired_weight == 50


def test_lowered_weight_the_router_cannot_reach_says_what_it_achieves() -> None:
    since = T0 + timedelta(seconds=5)
    status, deps = at_step_two(undecidedSince=since.isoformat())
    deps["fraud-v2"] = deployment("fraud-v2", ready=1, replicas=1)
    deps["fraud-v1"] = deployment("fraud-v1", ready=3, replicas=3)
    decision = tick(
        status,
        now=T0 + timedelta(seconds=10),
        deployments=deps,
        model_deployment=careful(undecidedWeight=10),
    )
    assert decision.status.desired_weight == 10
    assert decision.status.weight == 25  # one pod of four: the replicas router's least
    assert "lowered to 10% from the step's 50% (undecidedWeight, 25% achieved)" in (
        decision.status.message or ""
    )


def test_a_step_at_or_below_undecided_weight_keeps_its_weight() -> None:
    status, deps = at_step(1, 1, 3)
    status["steps"] = FOUR_STEPS["steps"]
    decision = tick(
        status,
        now=T0 + timedelta(seconds=5),
        deployments=deps,
        analysis=[gathering("errors", 0.035, 0.03)],
        model_deployment=careful(),
    )
    assert decision.status.undecided_since is not None  # still tracked for maxUndecided
    assert decision.status.desired_weight == 25
    reason = next(c.reason for c in decision.status.conditions if c.type == cond.READY)
    assert reason == cond.STEP_PROGRESSING


def test_lowered_weight_holds_while_not_leaning_until_a_pass() -> None:
    since = T0 + timedelta(seconds=5)
    status, deps = at_step_two(undecidedSince=since.isoformat())
    decision = tick(
        status,
        now=T0 + timedelta(seconds=30),
        deployments=deps,
        analysis=[gathering("errors", 0.02, 0.03)],
        model_deployment=careful(),
    )
    assert decision.status.undecided_since == since
    assert decision.status.desired_weight == 25


def test_a_pass_restores_the_step_weight_and_starts_its_pause_over() -> None:
    since = T0 + timedelta(seconds=5)
    status, deps = at_step_two(undecidedSince=since.isoformat())
    deps["fraud-v2"] = deployment("fraud-v2", ready=1, replicas=1)
    deps["fraud-v1"] = deployment("fraud-v1", ready=3, replicas=3)
    now = T0 + timedelta(minutes=3)
    decision = tick(
        status,
        now=now,
        deployments=deps,
        analysis=[result(Verdict.PASS, "errors")],
        model_deployment=careful(),
    )
    assert decision.status.undecided_since is None
    assert decision.status.desired_weight == 50
    assert decision.status.step == 2  # not advanced: the step's weight must be reached again
    assert decision.status.weight_reached_at is None
    assert decision.status.step_started_at == now


def test_leaning_past_max_undecided_rolls_back_naming_the_slo() -> None:
    status, deps = at_step_two(undecidedSince=T0.isoformat())
    decision = tick(
        status,
        now=T0 + timedelta(minutes=30),
        deployments=deps,
        analysis=[gathering("accuracy", 0.84, 0.85)],
        model_deployment=careful(),
    )
    assert decision.status.phase == Phase.ROLLED_BACK
    ready = next(c for c in decision.status.conditions if c.type == cond.READY)
    assert ready.reason == cond.UNDECIDED_TOO_LONG
    assert "leaned toward a regression for 30m (maxUndecided 30m)" in ready.message
    assert "accuracy 0.84 vs limit 0.85" in ready.message


def test_just_before_max_undecided_keeps_waiting() -> None:
    status, deps = at_step_two(undecidedSince=T0.isoformat())
    decision = tick(
        status,
        now=T0 + timedelta(minutes=29, seconds=59),
        deployments=deps,
        analysis=[gathering("accuracy", 0.84, 0.85)],
        model_deployment=careful(),
    )
    assert decision.status.phase == Phase.PROGRESSING


def test_not_leaning_at_the_bound_starts_the_clock_over() -> None:
    status, deps = at_step_two(undecidedSince=T0.isoformat())
    decision = tick(
        status,
        now=T0 + timedelta(minutes=31),
        deployments=deps,
        analysis=[gathering("accuracy", 0.86, 0.85)],
        model_deployment=careful(),
    )
    assert decision.status.phase is not Phase.ROLLED_BACK  # held past its deadline instead
    assert decision.status.undecided_since is None
    assert decision.status.desired_weight == 50


def test_max_undecided_alone_bounds_time_without_lowering() -> None:
    status, deps = at_step_two(undecidedSince=T0.isoformat())
    model_deployment = md(
        slos=TYPED_SLOS, canary=FOUR_STEPS, analysis={**ANALYSIS, "maxUndecided": "10m"}
    )
    held = tick(
        status, now=T0 + timedelta(minutes=5), deployments=deps, model_deployment=model_deployment
    )
    assert held.status.desired_weight == 50
    gone = tick(
        status,
        now=T0 + timedelta(minutes=10),
        deployments=deps,
        analysis=[gathering("errors", 0.04, 0.03)],
        model_deployment=model_deployment,
    )
    assert gone.status.phase == Phase.ROLLED_BACK


def test_a_threshold_failure_within_the_limit_leans() -> None:
    status, deps = at_step_two()
    decision = tick(
        status,
        now=T0 + timedelta(seconds=5),
        deployments=deps,
        analysis=[result(Verdict.FAIL)],
        model_deployment=md(canary=FOUR_STEPS, analysis={**CAREFUL, "failureLimit": 2}),
    )
    assert decision.status.phase == Phase.PROGRESSING
    assert decision.status.undecided_since is not None
    assert decision.status.desired_weight == 25


def test_measuring_problems_do_not_lean() -> None:
    status, deps = at_step_two()
    unmeasured = SLOResult(
        slo="errors", verdict=Verdict.INCONCLUSIVE, threshold="t", reason="no data"
    )
    decision = tick(
        status,
        now=T0 + timedelta(seconds=5),
        deployments=deps,
        analysis=[unmeasured],
        model_deployment=careful(inconclusiveLimit=5),
    )
    assert decision.status.undecided_since is None
