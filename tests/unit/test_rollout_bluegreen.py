"""The blue-green strategy on the replicas router: preview, one switch, a window to switch back."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from slipway.api import conditions as cond
from slipway.api import constants as c
from slipway.api.models import SLOResult
from slipway.api.phases import Phase, Verdict
from slipway.kube.children import build_preview_service
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
from slipway.rollout.model import decide_model
from slipway.rollout.release import decide
from tests.unit.factories import T0, deployment, model, release

SLOS = [{"name": "errors", "errorRate": {}, "threshold": {"maxIncrease": 0.5}}]


def md(serving: str | None = "fraud-v1", **spec: Any) -> Any:
    defaults: dict[str, Any] = {"replicas": 4, "blueGreen": {"scaleDownDelay": "30s"}}
    defaults.update(spec)
    m = model(stable="fraud-v1", active="fraud-v2", **defaults)
    m.status.serving = serving
    return m


def tick(
    status: dict[str, Any] | None,
    now: datetime,
    deployments: dict[str, DeploymentState],
    model_deployment: Any = None,
    analysis: list[SLOResult] | None = None,
    annotations: dict[str, str] | None = None,
    services: dict[str, str] | None = None,
) -> Decision:
    rel = release(strategy="blueGreen", status=status or {})
    if annotations:
        rel.metadata.annotations = annotations
    return decide(
        Situation(
            release=rel,
            model=model_deployment if model_deployment is not None else md(),
            siblings=(),
            deployments=deployments,
            now=now,
            analysis=analysis,
            services=services or {},
        )
    )


def services(decision: Decision) -> dict[str, dict[str, str]]:
    """Service name -> selector, for every Service the decision applies."""
    return {
        a.body["metadata"]["name"]: a.body["spec"]["selector"]
        for a in decision.actions
        if isinstance(a, ApplyObject) and a.body["kind"] == "Service"
    }


def preview_exists(m: Any = None) -> dict[str, str]:
    """The cluster's Services: the <model>-preview Service, as the preview applied it."""
    body = build_preview_service(m if m is not None else md(), "fraud-v2")
    return {body["metadata"]["name"]: service_fingerprint(body)}


STABLE_ONLY = {"fraud-v1": deployment("fraud-v1", ready=4, replicas=4)}
BOTH = {
    "fraud-v1": deployment("fraud-v1", ready=4, replicas=4),
    "fraud-v2": deployment("fraud-v2", ready=4, replicas=4),
}
PREVIEW = {
    "phase": "Progressing",
    "strategy": "blueGreen",
    "step": 1,
    "startedAt": T0.isoformat(),
    "stepStartedAt": T0.isoformat(),
}


def switched(at: datetime = T0) -> dict[str, Any]:
    return {
        **PREVIEW,
        "step": 2,
        "switchedAt": at.isoformat(),
        "stepStartedAt": at.isoformat(),
        "weightReachedAt": at.isoformat(),
    }


def test_preview_pins_live_traffic_to_the_stable_before_the_candidate_has_pods() -> None:
    fresh = md(serving=None)
    fresh.status.active_release = None
    decision = tick(None, T0, STABLE_ONLY, model_deployment=fresh)
    assert decision.status.phase is Phase.PROGRESSING
    assert decision.status.weight == 0
    pin = decision.actions.index(SetServing("fraud-v1"))
    deploy = next(
        i
        for i, a in enumerate(decision.actions)
        if isinstance(a, ApplyObject) and a.body["kind"] == "Deployment"
    )
    assert pin < deploy
    assert services(decision) == {
        "fraud": {c.LABEL_MODEL: "fraud", c.LABEL_RELEASE: "fraud-v1"},
        "fraud-preview": {c.LABEL_MODEL: "fraud", c.LABEL_RELEASE: "fraud-v2"},
    }
    body = next(
        a.body
        for a in decision.actions
        if isinstance(a, ApplyObject) and a.body["kind"] == "Deployment"
    )
    assert body["spec"]["replicas"] == 4  # the preview runs at full size
    assert SetActive("fraud-v2") in decision.actions


def test_an_available_preview_without_slos_switches_in_one_selector_change() -> None:
    decision = tick(PREVIEW, T0 + timedelta(seconds=5), BOTH, services=preview_exists())
    assert decision.status.switched_at == T0 + timedelta(seconds=5)
    assert decision.status.weight == 100
    assert SetServing("fraud-v2") in decision.actions
    assert services(decision) == {"fraud": {c.LABEL_MODEL: "fraud", c.LABEL_RELEASE: "fraud-v2"}}
    assert not any(isinstance(a, ScaleDeployment) for a in decision.actions)  # nothing restarts
    ready = next(x for x in decision.status.conditions if x.type == cond.READY)
    assert ready.reason == cond.SWITCHED
    # Looked at again when the window ends (or sooner: at least every 10 s in flight).
    later = tick(
        decision.status.model_dump(by_alias=True, mode="json"),
        T0 + timedelta(seconds=30),
        BOTH,
        md(serving="fraud-v2"),
    )
    assert later.look_again_at == T0 + timedelta(seconds=35)


def test_a_preview_service_missing_or_changed_is_applied_again() -> None:
    manual = md(blueGreen={"autoPromotion": False})  # the preview stays a preview
    want = {"fraud-preview": {c.LABEL_MODEL: "fraud", c.LABEL_RELEASE: "fraud-v2"}}
    stale = {"fraud-preview": "not-its-fingerprint"}
    for cluster, applied in [({}, want), (stale, want), (preview_exists(manual), {})]:
        decision = tick(PREVIEW, T0, BOTH, model_deployment=manual, services=cluster)
        assert decision.status.step == 1 and decision.status.switched_at is None
        assert services(decision) == applied


def test_without_auto_promotion_it_waits_for_slipway_promote() -> None:
    manual = md(blueGreen={"autoPromotion": False})
    waiting = tick(PREVIEW, T0 + timedelta(minutes=3), BOTH, model_deployment=manual)
    assert waiting.status.switched_at is None
    assert "waiting for `slipway promote`" in (waiting.status.message or "")
    promoted = tick(
        PREVIEW,
        T0 + timedelta(minutes=3),
        BOTH,
        model_deployment=manual,
        annotations={"slipway.dev/action": "promote"},
    )
    assert promoted.status.switched_at is not None
    assert "promoted by annotation" in (promoted.status.message or "")


def test_auto_promotion_delay_is_waited_for_and_is_the_next_look() -> None:
    delayed = md(blueGreen={"autoPromotionDelay": "20s"})
    status = {**PREVIEW, "weightReachedAt": T0.isoformat()}
    early = tick(status, T0 + timedelta(seconds=15), BOTH, model_deployment=delayed)
    assert early.status.switched_at is None
    assert early.look_again_at == T0 + timedelta(seconds=20)
    due = tick(status, T0 + timedelta(seconds=20), BOTH, model_deployment=delayed)
    assert due.status.switched_at is not None


def test_the_preview_switches_only_after_its_analysis_passed() -> None:
    gated = md(slos=SLOS)
    status = {**PREVIEW, "weightReachedAt": T0.isoformat()}
    waiting = SLOResult(
        slo="errors",
        verdict=Verdict.INCONCLUSIVE,
        judge="sequential",
        gathering=True,
        samples=50,
        samples_needed=400,
        reason="SLO errors: gathering",
    )
    held = tick(status, T0 + timedelta(seconds=3), BOTH, gated, analysis=[waiting])
    assert held.status.switched_at is None
    assert "errors has 50 of ~400 samples" in (held.status.message or "")
    passing = SLOResult(slo="errors", verdict=Verdict.PASS, judge="sequential", reason="ok")
    go = tick(status, T0 + timedelta(seconds=6), BOTH, gated, analysis=[passing])
    assert go.status.switched_at == T0 + timedelta(seconds=6)


def test_inside_the_window_the_old_stable_stays_at_full_size() -> None:
    decision = tick(switched(), T0 + timedelta(seconds=10), BOTH, md(serving="fraud-v2"))
    assert decision.status.phase is Phase.PROGRESSING
    assert decision.actions == []
    assert "rollback window until" in (decision.status.message or "")


def test_after_the_window_it_becomes_the_stable_and_the_old_one_goes_to_zero() -> None:
    decision = tick(switched(), T0 + timedelta(seconds=31), BOTH, md(serving="fraud-v2"))
    assert decision.status.phase is Phase.SUCCEEDED
    assert any(isinstance(a, RecordStable) for a in decision.actions)
    assert ScaleDeployment("fraud-fraud-v1", 0) in decision.actions
    assert not any(isinstance(a, SetServing) for a in decision.actions)  # already pinned there


def test_abort_inside_the_window_switches_back_before_draining_and_starts_no_pod() -> None:
    decision = tick(
        switched(),
        T0 + timedelta(seconds=10),
        BOTH,
        md(serving="fraud-v2"),
        annotations={"slipway.dev/action": "abort"},
    )
    assert decision.status.phase is Phase.ROLLED_BACK
    back = decision.actions.index(SetServing("fraud-v1"))
    drain = decision.actions.index(ScaleDeployment("fraud-fraud-v2", 0))
    assert back < drain
    assert services(decision) == {"fraud": {c.LABEL_MODEL: "fraud", c.LABEL_RELEASE: "fraud-v1"}}
    assert ScaleDeployment("fraud-fraud-v1", 4) not in decision.actions  # never stopped


def test_a_proven_failure_after_the_switch_switches_back() -> None:
    failed = SLOResult(slo="errors", verdict=Verdict.FAIL, judge="sequential", reason="worse")
    decision = tick(
        switched(), T0 + timedelta(seconds=10), BOTH, md(serving="fraud-v2", slos=SLOS), [failed]
    )
    assert decision.status.phase is Phase.ROLLED_BACK
    assert SetServing("fraud-v1") in decision.actions


def test_abort_before_the_switch_leaves_the_stable_untouched() -> None:
    decision = tick(
        {**PREVIEW, "weightReachedAt": T0.isoformat()},
        T0 + timedelta(seconds=2),
        BOTH,
        md(blueGreen={"autoPromotion": False}),
        annotations={"slipway.dev/action": "abort"},
    )
    assert decision.status.phase is Phase.ROLLED_BACK
    assert ScaleDeployment("fraud-fraud-v2", 0) in decision.actions
    assert not any(isinstance(a, SetServing) for a in decision.actions)
    assert not services(decision)


def test_a_model_at_rest_unpins_its_service_once_one_release_has_pods() -> None:
    pinned = md(serving="fraud-v1")
    pinned.status.active_release = None
    still = decide_model(pinned, BOTH, {}, T0)
    assert still.status.serving == "fraud-v1"  # the other release still has pods
    alone = decide_model(pinned, STABLE_ONLY, {}, T0)
    assert alone.status.serving is None


def test_a_canary_unpins_a_pinned_service_first() -> None:
    canary = md(serving="fraud-v1", canary={"steps": [{"weight": 50, "pause": "1m"}]})
    decision = decide(
        Situation(
            release=release(strategy="canary"),
            model=canary,
            siblings=(),
            deployments=STABLE_ONLY,
            now=T0,
        )
    )
    assert SetServing(None) in decision.actions
    assert services(decision) == {"fraud": {c.LABEL_MODEL: "fraud"}}
