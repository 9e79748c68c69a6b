"""The blue-green strategy: preview, one switch, a window to switch back.

On the replicas router first (the switch is the Service's selector), then on
gatewayAPI and istio: a switch counts only once its data plane has taken it
(the Service read back, the route's current generation accepted by every
Gateway, the VirtualService read back), and until then nothing is claimed,
nothing succeeds and the old stable keeps its full size.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from slipway.api import conditions as cond
from slipway.api import constants as c
from slipway.api.models import SLOResult
from slipway.api.phases import Phase, Verdict
from slipway.kube.children import build_preview_service, build_service
from slipway.kube.fingerprint import service_fingerprint
from slipway.kube.observe import DeploymentState, LiveRoute
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
from slipway.traffic import gatewayapi, istio
from slipway.traffic.routes import RoutePlan
from tests.unit.factories import T0, deployment, model, release
from tests.unit.test_traffic_routes import all_services, body_for, parent, with_status

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


def pinned(release_name: str | None, m: Any = None) -> dict[str, str]:
    """The cluster's Services with the model's Service read back selecting ``release_name``."""
    body = build_service(m if m is not None else md(), release_name)
    return {**preview_exists(m), body["metadata"]["name"]: service_fingerprint(body)}


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


LIVE = pinned("fraud-v2")
"""The model's Service read back selecting the candidate: the switch is live."""


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
    decision = tick(PREVIEW, T0 + timedelta(seconds=5), BOTH, services=pinned("fraud-v1"))
    assert SetServing("fraud-v2") in decision.actions
    assert services(decision) == {"fraud": {c.LABEL_MODEL: "fraud", c.LABEL_RELEASE: "fraud-v2"}}
    assert not any(isinstance(a, ScaleDeployment) for a in decision.actions)  # nothing restarts
    # Written, not yet read back: not claimed.
    assert decision.status.step == 2 and decision.status.switched_at is None
    assert decision.status.weight == 0
    ready = next(x for x in decision.status.conditions if x.type == cond.READY)
    assert ready.reason == cond.SWITCHING
    assert "every request goes to" not in (decision.status.message or "")
    # The next pass reads the Service back selecting v2: the switch is claimed then.
    live = tick(
        decision.status.model_dump(by_alias=True, mode="json"),
        T0 + timedelta(seconds=6),
        BOTH,
        md(serving="fraud-v2"),
        services=pinned("fraud-v2"),
    )
    assert live.status.switched_at == T0 + timedelta(seconds=6)
    assert live.status.weight == 100 and live.actions == []
    ready = next(x for x in live.status.conditions if x.type == cond.READY)
    assert ready.reason == cond.SWITCHED
    assert "every request goes to 'fraud-v2'" in (live.status.message or "")
    # Looked at again when the window ends (or sooner: at least every 10 s in flight).
    later = tick(
        live.status.model_dump(by_alias=True, mode="json"),
        T0 + timedelta(seconds=30),
        BOTH,
        md(serving="fraud-v2"),
        services=pinned("fraud-v2"),
    )
    assert later.look_again_at == T0 + timedelta(seconds=36)


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
    assert promoted.status.step == 2 and promoted.status.switched_at is None
    assert "promoted by annotation" in (promoted.status.message or "")


def test_auto_promotion_delay_is_waited_for_and_is_the_next_look() -> None:
    delayed = md(blueGreen={"autoPromotionDelay": "20s"})
    status = {**PREVIEW, "weightReachedAt": T0.isoformat()}
    early = tick(status, T0 + timedelta(seconds=15), BOTH, model_deployment=delayed)
    assert early.status.switched_at is None
    assert early.look_again_at == T0 + timedelta(seconds=20)
    due = tick(status, T0 + timedelta(seconds=20), BOTH, model_deployment=delayed)
    assert due.status.step == 2 and SetServing("fraud-v2") in due.actions


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
    assert go.status.step == 2 and go.status.step_started_at == T0 + timedelta(seconds=6)
    assert SetServing("fraud-v2") in go.actions


def test_inside_the_window_the_old_stable_stays_at_full_size() -> None:
    decision = tick(
        switched(), T0 + timedelta(seconds=10), BOTH, md(serving="fraud-v2"), services=LIVE
    )
    assert decision.status.phase is Phase.PROGRESSING
    assert decision.actions == []
    assert "rollback window until" in (decision.status.message or "")


def test_after_the_window_it_becomes_the_stable_and_the_old_one_goes_to_zero() -> None:
    decision = tick(
        switched(), T0 + timedelta(seconds=31), BOTH, md(serving="fraud-v2"), services=LIVE
    )
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


# ---------------------------------------------------------------- a switch not taken

SWITCHING = {**PREVIEW, "step": 2, "stepStartedAt": T0.isoformat()}
"""The switch written at T0, never seen live yet."""
DEADLINE = md(progressDeadline="20s")


@pytest.mark.parametrize("seconds", [1, 19, 20])
def test_a_switch_not_read_back_is_not_claimed_and_never_succeeds_nor_scales_down(
    seconds: int,
) -> None:
    # Past the 30 s window too: without the switch live there is no window at all.
    m = md(serving="fraud-v2", progressDeadline="20s", blueGreen={"scaleDownDelay": "0s"})
    decision = tick(
        SWITCHING, T0 + timedelta(seconds=seconds), BOTH, m, services=pinned("fraud-v1")
    )
    s = decision.status
    assert s.phase is Phase.PROGRESSING and s.switched_at is None and s.weight == 0
    assert not any(isinstance(a, (RecordStable, ScaleDeployment)) for a in decision.actions)
    assert "every request goes to" not in (s.message or "")
    assert "Service 'fraud' does not select 'fraud-v2''s pods yet" in (s.message or "")
    assert "'fraud-v1' may still get every request and stays at full size" in (s.message or "")
    ready = next(x for x in s.conditions if x.type == cond.READY)
    assert ready.reason == cond.SWITCHING
    # The deadline is the next look (no event announces a Gateway that stays silent).
    assert decision.look_again_at is not None
    assert decision.look_again_at <= T0 + timedelta(seconds=20, milliseconds=50)


def test_a_switch_not_taken_within_progress_deadline_switches_back_to_the_whole_stable() -> None:
    m = md(serving="fraud-v2", progressDeadline="20s")
    decision = tick(SWITCHING, T0 + timedelta(seconds=21), BOTH, m, services=pinned("fraud-v1"))
    s = decision.status
    assert s.phase is Phase.ROLLED_BACK and s.switched_at is None
    assert "not taken by its data plane within progressDeadline 20s" in (s.message or "")
    assert SetServing("fraud-v1") in decision.actions
    assert not any(
        isinstance(a, ScaleDeployment) and a.name == "fraud-fraud-v1" for a in decision.actions
    )
    ready = next(x for x in s.conditions if x.type == cond.READY)
    assert ready.reason == cond.PROGRESS_DEADLINE_EXCEEDED


def test_a_live_switch_that_is_lost_is_no_longer_claimed_and_its_window_starts_over() -> None:
    m = md(serving="fraud-v2")
    # Someone pinned the Service back to v1 after the switch, past the window's end.
    lost = tick(switched(), T0 + timedelta(seconds=40), BOTH, m, services=pinned("fraud-v1"))
    s = lost.status
    assert s.phase is Phase.PROGRESSING and s.switched_at is None
    assert s.step_started_at == T0 + timedelta(seconds=40)
    assert not any(isinstance(a, (RecordStable, ScaleDeployment)) for a in lost.actions)
    back = tick(
        s.model_dump(by_alias=True, mode="json"), T0 + timedelta(seconds=41), BOTH, m, services=LIVE
    )
    assert back.status.switched_at == T0 + timedelta(seconds=41)
    assert back.status.phase is Phase.PROGRESSING  # a fresh 30 s window


# ---------------------------------------------------------------- behind a route

GATEWAY = {"router": "gatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "web"}]}}
ROUTE_SERVICES = all_services(md(**GATEWAY), "fraud-v1", "fraud-v2")


def gateway_route(
    m: Any, to: str, generation: int, answered: int | None, refused: bool = False
) -> LiveRoute:
    """The HTTPRoute sending everything to ``to``, at ``generation``; its Gateway answered
    ``answered`` (None: never), accepting it unless ``refused``."""
    body = with_status(body_for(m, RoutePlan(((to, 100),))), generation, [])
    if answered is not None:
        reason = "NotAllowedByListeners" if refused else "Accepted"
        accepted = "False" if refused else "True"
        body["status"] = {"parents": [parent(accepted=accepted, observed=answered, reason=reason)]}
    return gatewayapi.observe(body)


def route_tick(
    status: dict[str, Any], seconds: int, m: Any, route: LiveRoute | None, **kw: Any
) -> Decision:
    rel = release(strategy="blueGreen", status=status)
    rel.metadata.annotations = kw.pop("annotations", None)
    return decide(
        Situation(
            release=rel,
            model=m,
            siblings=(),
            deployments=BOTH,
            now=T0 + timedelta(seconds=seconds),
            route=route,
            services={**ROUTE_SERVICES, **preview_exists(m)},
            **kw,
        )
    )


def routes(decision: Decision, kind: str = "HTTPRoute") -> list[dict[str, Any]]:
    return [
        a.body for a in decision.actions if isinstance(a, ApplyObject) and a.body["kind"] == kind
    ]


def test_a_promoted_switch_on_gateway_api_waits_for_the_gateway_to_take_its_generation() -> None:
    m = md(serving=None, progressDeadline="20s", blueGreen={"autoPromotion": False}, **GATEWAY)
    promote = {"slipway.dev/action": "promote"}
    mirrored = with_status(
        body_for(m, RoutePlan((("fraud-v1", 100),), ("fraud-v2", 100))), 4, [parent(observed=4)]
    )
    preview = {**PREVIEW, "weightReachedAt": T0.isoformat()}
    written = route_tick(preview, 5, m, gatewayapi.observe(mirrored), annotations=promote)
    [body] = routes(written)
    assert [b["name"] for b in body["spec"]["rules"][0]["backendRefs"]] == ["fraud-fraud-v2"]
    assert "filters" not in body["spec"]["rules"][0]  # the preview's mirror went in the same write
    assert written.status.switched_at is None and written.status.step == 2
    # The Gateway goes silent: generation 5 is written, its last answer is for 4.
    silent = gateway_route(m, "fraud-v2", generation=5, answered=4)
    for seconds in (6, 25, 26):
        waiting = route_tick(
            written.status.model_dump(by_alias=True, mode="json"), seconds, m, silent
        )
        if seconds < 26:
            s = waiting.status
            assert s.phase is Phase.PROGRESSING and s.switched_at is None
            assert "HTTPRoute 'fraud' generation 5 has no status from its data plane yet" in (
                s.message or ""
            )
            assert "Gateway web last answered generation 4" in (s.message or "")
            assert not any(isinstance(a, (RecordStable, ScaleDeployment)) for a in waiting.actions)
            assert routes(waiting) == []  # the spec is right: nothing to write, only to wait
    # Past progressDeadline: back to v1, which never shrank; the generation is named.
    s = waiting.status
    assert s.phase is Phase.ROLLED_BACK
    assert "within progressDeadline 20s: HTTPRoute 'fraud' generation 5 has no status" in (
        s.message or ""
    )
    [back] = routes(waiting)
    assert [b["name"] for b in back["spec"]["rules"][0]["backendRefs"]] == ["fraud-fraud-v1"]
    # Behind a route nothing is scaled: the candidate waits for the model pass to prune it
    # once the live route no longer names it, and the stable never stopped.
    assert not any(isinstance(a, ScaleDeployment) for a in waiting.actions)
    assert "once its data plane takes the change" in (s.message or "")


def test_a_switch_the_gateway_refuses_says_why_and_is_not_claimed() -> None:
    m = md(serving=None, progressDeadline="20s", **GATEWAY)
    refused = gateway_route(m, "fraud-v2", generation=5, answered=5, refused=True)
    d = route_tick(SWITCHING, 3, m, refused)
    assert d.status.switched_at is None
    assert "generation 5 is not accepted: Gateway web: Accepted=False NotAllowedByListeners" in (
        d.status.message or ""
    )
    assert not any(isinstance(a, (RecordStable, ScaleDeployment)) for a in d.actions)


def test_a_switch_the_gateway_accepted_is_claimed_then_succeeds_and_only_then_scales_down() -> None:
    m = md(serving=None, **GATEWAY)
    taken = gateway_route(m, "fraud-v2", generation=5, answered=5)
    live = route_tick(SWITCHING, 3, m, taken)
    assert live.status.switched_at == T0 + timedelta(seconds=3)
    assert "every request goes to 'fraud-v2'" in (live.status.message or "")
    assert "accepted" in (live.status.route or "")
    done = route_tick(live.status.model_dump(by_alias=True, mode="json"), 34, m, taken)
    assert done.status.phase is Phase.SUCCEEDED
    assert ScaleDeployment("fraud-fraud-v1", 0) in done.actions
    # The same window's end with the Gateway silent on a later generation (a route put
    # back by hand and rewritten): not Succeeded, v1 kept whole.
    later = gateway_route(m, "fraud-v2", generation=6, answered=5)
    held = route_tick(live.status.model_dump(by_alias=True, mode="json"), 34, m, later)
    assert held.status.phase is Phase.PROGRESSING and held.status.switched_at is None
    assert not any(isinstance(a, (RecordStable, ScaleDeployment)) for a in held.actions)


def test_on_istio_the_switch_counts_once_the_virtualservice_reads_back_with_it() -> None:
    m = md(serving=None, router="istio")
    services = {**all_services(m, "fraud-v1", "fraud-v2"), **preview_exists(m)}

    def at(status: dict[str, Any], seconds: int, to: str) -> Decision:
        route = istio.observe(body_for(m, RoutePlan(((to, 100),))))
        rel = release(strategy="blueGreen", status=status)
        return decide(
            Situation(
                rel, m, (), BOTH, T0 + timedelta(seconds=seconds), route=route, services=services
            )
        )

    old = at(SWITCHING, 1, "fraud-v1")  # not read back yet: the switch is still to write
    assert old.status.switched_at is None and routes(old, "VirtualService")
    new = at(SWITCHING, 2, "fraud-v2")  # read back with v2 at 100: taken (no status to wait for)
    assert new.status.switched_at == T0 + timedelta(seconds=2) and new.actions == []
