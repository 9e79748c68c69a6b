"""The shadow phase: strategy shadow on its own, and as the first step of a canary or blue-green.

A mirror copies a share of live requests to the candidate while users only ever
get the stable's answers. These tests drive ``decide`` through each tick with a
live route built by the router's own ``build`` and read back by its ``observe``
(for gatewayAPI with a Gateway's status), as the operator would see it.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

import pytest

from slipway.api import conditions as cond
from slipway.api import constants as c
from slipway.api.models import (
    ModelDeployment,
    ModelReleaseStatus,
    RolloutPolicy,
    ShadowSpec,
    SLOResult,
)
from slipway.api.phases import Phase, Router, Strategy, Verdict
from slipway.kube.children import (
    build_preview_service,
    build_release_service,
    preview_service_name,
)
from slipway.kube.fingerprint import service_fingerprint
from slipway.kube.observe import DeploymentState, LiveRoute
from slipway.rollout.core import (
    Action,
    ApplyObject,
    Decision,
    RecordStable,
    ScaleDeployment,
    SetActive,
    Situation,
)
from slipway.rollout.gate import (
    SHADOW_STEP,
    agreement_checked,
    analysis_applies,
    analysis_due,
    analysis_settings,
    record_analysis,
    shadow_for,
)
from slipway.rollout.release import decide
from slipway.traffic import ROUTE_KINDS, gatewayapi, istio
from slipway.traffic.routes import FINGERPRINT, RoutePlan, route_body
from tests.unit.factories import T0, deployment, model, release

ROUTED: dict[Router, dict[str, Any]] = {
    Router.GATEWAY_API: {"router": "gatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "web"}]}},
    Router.ISTIO: {"router": "istio"},
}
ROUTERS = list(ROUTED)
SHADOW: dict[str, Any] = {"mirrorPercent": 50, "duration": "1m"}
SLOS = [{"name": "latency", "query": "latency", "threshold": {"max": 0.25}}]
ANALYSIS = {"interval": "5s", "failureLimit": 0, "inconclusiveLimit": 1}
STEPS = {"steps": [{"weight": 25, "pause": "10s"}, {"weight": 50, "pause": "10s"}]}

AT_REST = RoutePlan((("fraud-v1", 100),))
MIRRORED = RoutePlan((("fraud-v1", 100),), ("fraud-v2", 50))
DURATION = timedelta(minutes=1)
DEADLINE = timedelta(minutes=5)


def kept_until_unrouted(d: Any) -> bool:
    """Behind a route the candidate is not drained in the cycle that takes it off the
    route: the model's pass prunes it once the data plane no longer sends it anything."""
    return not any(isinstance(a, ScaleDeployment) and a.name == "fraud-fraud-v2" for a in d.actions)


def md(
    router: Router = Router.ISTIO, active: str | None = "fraud-v2", **spec: Any
) -> ModelDeployment:
    defaults: dict[str, Any] = {"replicas": 4, "analysis": ANALYSIS, "canary": STEPS}
    defaults.update(ROUTED[router])
    defaults.update(spec)
    return model(stable="fraud-v1", active=active, **defaults)


def live_route(
    m: ModelDeployment, plan: RoutePlan, accepted: bool | None = True, why: str = ""
) -> LiveRoute:
    """The model's route as applied for ``plan`` and read back by its router; for
    gatewayAPI, with the Gateway's verdict on the current generation (None: no status)."""
    build = istio.build if m.spec.router is Router.ISTIO else gatewayapi.build
    return settled(route_body(m, plan, build), accepted, why)


def settled(body: dict[str, Any], accepted: bool | None = True, why: str = "") -> LiveRoute:
    """A route body as the API server then holds it (for gatewayAPI, with its Gateways'
    verdict), read back by its router."""
    if body["kind"] == istio.KIND:
        return istio.observe(body)
    body = copy.deepcopy(body)
    body["metadata"]["generation"] = 3
    if accepted is not None:
        verdict = "True" if accepted else "False"
        body["status"] = {
            "parents": [
                {
                    "parentRef": ref,
                    "conditions": [
                        {
                            "type": "Accepted",
                            "status": verdict,
                            "reason": "Accepted" if accepted else "NotAllowedByListeners",
                            "message": why,
                            "observedGeneration": 3,
                        },
                        {"type": "ResolvedRefs", "status": "True", "observedGeneration": 3},
                    ],
                }
                for ref in body["spec"]["parentRefs"]
            ]
        }
    route = gatewayapi.observe(body)
    assert route.accepted is accepted
    return route


def services(m: ModelDeployment, *releases: str) -> dict[str, str]:
    bodies = [build_release_service(m, r) for r in releases]
    return {b["metadata"]["name"]: service_fingerprint(b) for b in bodies}


def at_rest(m: ModelDeployment) -> dict[str, Any]:
    """The cluster before the release: the stable at full size, the route all to it."""
    return {
        "route": live_route(m, AT_REST),
        "deployments": {"fraud-v1": deployment("fraud-v1", ready=4, replicas=4)},
        "services": services(m, "fraud-v1"),
    }


def mirroring(
    m: ModelDeployment, plan: RoutePlan = MIRRORED, pods: int = 2, ready: int | None = None
) -> dict[str, Any]:
    """The cluster with the candidate up for the mirror and the route as ``plan`` says."""
    return {
        "route": live_route(m, plan),
        "deployments": {
            "fraud-v1": deployment("fraud-v1", ready=4, replicas=4),
            "fraud-v2": deployment(
                "fraud-v2", ready=pods if ready is None else ready, replicas=pods
            ),
        },
        "services": services(m, "fraud-v1", "fraud-v2"),
    }


def carried_out(m: ModelDeployment, world: dict[str, Any], decision: Decision) -> dict[str, Any]:
    """``world`` once ``decision``'s actions are done and every candidate pod is ready: the
    Deployments at their size, the Services and the route as applied (the route accepted),
    the model's active release set."""
    deployments = dict(world["deployments"])
    after = {**world, "deployments": deployments, "services": dict(world["services"])}
    for action in decision.actions:
        if isinstance(action, SetActive):
            m.status.active_release = action.release
        if isinstance(action, ScaleDeployment):
            name = action.name.removeprefix(f"{m.metadata.name}-")
            deployments[name] = deployment(name, ready=action.replicas, replicas=action.replicas)
        if not isinstance(action, ApplyObject):
            continue
        body, kind = action.body, action.body["kind"]
        if kind == "Deployment":
            name, pods = body["metadata"]["labels"][c.LABEL_RELEASE], body["spec"]["replicas"]
            deployments[name] = deployment(name, ready=pods, replicas=pods)
        elif kind == "Service":
            after["services"][body["metadata"]["name"]] = service_fingerprint(body)
        elif kind in ROUTE_KINDS:
            after["route"] = settled(body)
    return after


def untouched_for_now(decision: Decision, world: dict[str, Any]) -> bool:
    """The decision neither routes to nor mirrors to the candidate: with a route, it does
    not write it at all; without one, it writes the stable at 100 only."""
    written = routes(decision)
    if world["route"] is not None:
        return written == []
    return [(r.backends, r.mirror) for r in written] == [((("fraud-fraud-v1", 100),), None)]


def shadowing(
    reached: datetime | None = T0, strategy: str = "shadow", **extra: Any
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": "Progressing",
        "strategy": strategy,
        "step": 0,
        "stepLabel": "shadow",
        "startedAt": T0.isoformat(),
        "stepStartedAt": T0.isoformat(),
    }
    if strategy == "canary":
        status["steps"] = STEPS["steps"]
    if reached is not None:
        status["weightReachedAt"] = reached.isoformat()
    status.update(extra)
    return status


def record(step: int, verdict: str, at: datetime) -> dict[str, Any]:
    return {"at": at.isoformat(), "step": step, "verdict": verdict, "slos": []}


def result(verdict: Verdict, judge: str | None = None, gathering: bool = False) -> SLOResult:
    return SLOResult(
        slo="latency",
        verdict=verdict,
        value=0.3,
        threshold="<= 0.25",
        reason=f"SLO latency: {verdict}",
        judge=judge,
        gathering=gathering,
    )


def situation(
    m: ModelDeployment,
    status: dict[str, Any] | None = None,
    now: datetime = T0,
    *,
    route: LiveRoute | None = None,
    deployments: dict[str, DeploymentState] | None = None,
    services: dict[str, str] | None = None,
    analysis: list[SLOResult] | None = None,
    annotations: dict[str, str] | None = None,
    strategy: str = "shadow",
    shadow: dict[str, Any] | None = SHADOW,
    policy: RolloutPolicy | None = None,
) -> Situation:
    spec: dict[str, Any] = {"strategy": strategy}
    if shadow is not None:
        spec["shadow"] = shadow
    rel = release(status=status or {}, **spec)
    if annotations:
        rel.metadata.annotations = annotations
    return Situation(
        release=rel,
        model=m,
        siblings=(),
        deployments=deployments if deployments is not None else {},
        now=now,
        policy=policy,
        analysis=analysis,
        route=route,
        services=services or {},
    )


def tick(m: ModelDeployment, status: dict[str, Any] | None = None, **kw: Any) -> Decision:
    return decide(situation(m, status, **kw))


def routes(decision: Decision) -> list[LiveRoute]:
    """The route objects the decision applies, read back by their router."""
    return [
        ROUTE_KINDS[a.body["kind"]][3](a.body)
        for a in decision.actions
        if isinstance(a, ApplyObject) and a.body["kind"] in ROUTE_KINDS
    ]


def the_route(decision: Decision) -> LiveRoute:
    [route] = routes(decision)
    return route


def applied(decision: Decision, kind: str) -> list[dict[str, Any]]:
    return [
        a.body for a in decision.actions if isinstance(a, ApplyObject) and a.body["kind"] == kind
    ]


def reason(status: ModelReleaseStatus) -> str:
    return next(x.reason for x in status.conditions if x.type == cond.READY)


def touches_stable(actions: list[Action]) -> bool:
    return any(
        (isinstance(a, ScaleDeployment) and a.name == "fraud-fraud-v1")
        or (
            isinstance(a, ApplyObject)
            and a.body["kind"] == "Deployment"
            and a.body["metadata"]["name"] == "fraud-fraud-v1"
        )
        for a in actions
    )


def stable_only(route: LiveRoute) -> bool:
    return route.backends == (("fraud-fraud-v1", 100),) and route.mirror is None


PROMOTE = {c.ANNOTATION_ACTION: "promote"}
ABORT = {c.ANNOTATION_ACTION: "abort"}
PAUSE = {c.ANNOTATION_PAUSED: "true"}


# ---------------------------------------------------------------- strategy shadow: start


@pytest.mark.parametrize("router", ROUTERS)
def test_first_tick_claims_the_slot_sizes_the_candidate_for_the_mirror_and_mirrors(
    router: Router,
) -> None:
    m = md(router, active=None)
    world = at_rest(m)
    d = tick(m, None, **world)
    s = d.status
    assert s.phase is Phase.PROGRESSING and reason(s) == cond.SHADOWING
    assert s.strategy is Strategy.SHADOW
    assert (s.step, s.step_label) == (SHADOW_STEP, "shadow")
    assert (s.weight, s.desired_weight) == (0, 0)
    assert (s.desired_mirror_percent, s.mirror_percent) == (50, 0)
    assert s.started_at == T0 and s.step_started_at == T0 and s.weight_reached_at is None
    assert d.actions[0] == SetActive("fraud-v2")
    [dep] = applied(d, "Deployment")
    assert dep["metadata"]["name"] == "fraud-fraud-v2"
    assert dep["spec"]["replicas"] == 2  # 50 % of 4 pods
    assert [b["metadata"]["name"] for b in applied(d, "Service")] == ["fraud-fraud-v2"]
    # No copy goes to a candidate without ready pods: the route stays as it is.
    assert untouched_for_now(d, world)
    assert not touches_stable(d.actions)
    assert s.message == (
        "shadow: waiting for the mirror of 50% to 'fraud-v2' (now 0%):"
        " waiting for 0/2 ready candidate pods before the route changes"
    )
    assert d.look_again_at is not None

    # Next tick: its pods are ready, the mirror goes on the route.
    status = s.model_dump(by_alias=True, mode="json")
    world = carried_out(m, world, d)
    nxt = tick(m, status, now=T0 + timedelta(seconds=2), **world)
    route = the_route(nxt)
    assert route.backends == (("fraud-fraud-v1", 100),)  # users see only the stable
    assert route.mirror == ("fraud-fraud-v2", 50)
    assert not applied(nxt, "Deployment") and not applied(nxt, "Service")
    assert not touches_stable(nxt.actions)
    s = nxt.status
    assert (s.desired_mirror_percent, s.mirror_percent, s.weight_reached_at) == (50, 0, None)
    assert "waiting for the mirror of 50% to 'fraud-v2' (now 0%)" in (s.message or "")
    assert "does not have the new weights yet" in (s.message or "")
    assert "ready candidate pods" not in (s.message or "")

    # And once it is live, the clock starts and nothing more is written.
    status = s.model_dump(by_alias=True, mode="json")
    live = tick(m, status, now=T0 + timedelta(seconds=4), **carried_out(m, world, nxt))
    assert live.actions == []
    assert live.status.weight_reached_at == T0 + timedelta(seconds=4)
    assert live.status.mirror_percent == 50


@pytest.mark.parametrize("router", ROUTERS)
def test_a_shadow_release_without_its_own_spec_takes_the_models_else_the_defaults(
    router: Router,
) -> None:
    own = md(router, active=None, shadow={"mirrorPercent": 10, "duration": "30s"})
    d = tick(own, None, shadow=None, **at_rest(own))
    assert d.status.desired_mirror_percent == 10
    assert applied(d, "Deployment")[0]["spec"]["replicas"] == 1
    assert "waiting for 0/1 ready candidate pods" in (d.status.message or "")
    bare = md(router, active=None)
    world = at_rest(bare)
    d = tick(bare, None, shadow=None, **world)
    assert d.status.desired_mirror_percent == 100  # ShadowSpec's defaults
    assert applied(d, "Deployment")[0]["spec"]["replicas"] == 4
    assert untouched_for_now(d, world)
    status = d.status.model_dump(by_alias=True, mode="json")
    nxt = tick(bare, status, shadow=None, **carried_out(bare, world, d))
    assert the_route(nxt).mirror == ("fraud-fraud-v2", 100)


def test_a_shadow_release_on_the_replicas_router_is_refused_before_anything_is_written() -> None:
    m = model(stable="fraud-v1", replicas=4)
    d = tick(m, None, deployments={"fraud-v1": deployment("fraud-v1", 4, 4)})
    assert d.status.phase is Phase.FAILED and reason(d.status) == cond.ROUTER_NOT_SUPPORTED
    assert d.actions == []


# ---------------------------------------------------------------- waiting for the mirror


def test_a_mirror_written_but_unanswered_by_the_gateway_waits_for_its_status() -> None:
    m = md(Router.GATEWAY_API)
    world = mirroring(m)
    world["route"] = live_route(m, MIRRORED, accepted=None)
    d = tick(m, shadowing(reached=None), now=T0 + timedelta(seconds=5), **world)
    s = d.status
    assert s.phase is Phase.PROGRESSING and s.weight_reached_at is None
    assert s.mirror_percent == 0  # a route nobody took carries nothing
    assert s.message == (
        "shadow: waiting for the mirror of 50% to 'fraud-v2' (now 0%):"
        " HTTPRoute 'fraud' generation 3 has no status from its data plane yet"
        " (Gateway web has not answered)"
    )
    assert d.actions == []  # the spec is right: nothing to write, only to wait


def test_a_mirror_the_gateway_refuses_says_why() -> None:
    m = md(Router.GATEWAY_API)
    world = mirroring(m)
    world["route"] = live_route(m, MIRRORED, accepted=False, why="no listener for fraud")
    d = tick(m, shadowing(reached=None), now=T0 + timedelta(seconds=5), **world)
    assert d.status.phase is Phase.PROGRESSING and d.status.weight_reached_at is None
    assert d.status.message == (
        "shadow: waiting for the mirror of 50% to 'fraud-v2' (now 0%): HTTPRoute 'fraud'"
        " generation 3 is not accepted: Gateway web: Accepted=False NotAllowedByListeners:"
        " no listener for fraud"
    )
    assert "NOT accepted" in (d.status.route or "")


def test_no_route_yet_says_so() -> None:
    m = md(Router.ISTIO)
    world = mirroring(m)
    world["route"] = None
    d = tick(m, shadowing(reached=None), **world)
    assert "the 'fraud' route does not exist yet" in (d.status.message or "")
    assert the_route(d).mirror == ("fraud-fraud-v2", 50)


@pytest.mark.parametrize("router", ROUTERS)
def test_the_mirror_waits_for_the_candidates_pods(router: Router) -> None:
    m = md(router)
    d = tick(m, shadowing(reached=None), **mirroring(m, ready=1))
    assert d.status.weight_reached_at is None
    assert d.status.phase is Phase.PROGRESSING
    assert (d.status.message or "").startswith("shadow: waiting for the mirror of 50%")


@pytest.mark.parametrize("router", ROUTERS)
def test_waiting_for_the_candidates_pods_says_so(router: Router) -> None:
    m = md(router)
    d = tick(m, shadowing(reached=None), **mirroring(m, ready=1))
    assert (d.status.message or "").endswith(
        ": waiting for 1/2 ready candidate pods before the route changes"
    )
    assert d.actions == []  # the mirror already on the route stays as it is


# ---------------------------------------------------------------- the mirror is live


@pytest.mark.parametrize("router", ROUTERS)
def test_a_live_mirror_starts_the_clock_and_writes_nothing(router: Router) -> None:
    m = md(router)
    now = T0 + timedelta(seconds=3)
    d = tick(m, shadowing(reached=None), now=now, **mirroring(m))
    s = d.status
    assert s.weight_reached_at == now
    assert s.mirror_percent == 50 and s.weight == 0
    assert d.actions == []
    assert s.phase is Phase.PROGRESSING and reason(s) == cond.SHADOWING
    assert s.message == (
        "shadow: 50% of live requests copied to 'fraud-v2', answers discarded; users see only"
        " 'fraud-v1''s; runs until 12:01:03Z"
    )
    assert "mirror 50% to fraud-v2" in (s.route or "")


@pytest.mark.parametrize("router", ROUTERS)
def test_before_the_duration_ends_it_runs_on_whatever_the_analysis(router: Router) -> None:
    m = md(router, slos=SLOS)
    now = T0 + timedelta(seconds=30)
    d = tick(m, shadowing(), now=now, analysis=[result(Verdict.PASS)], **mirroring(m))
    s = d.status
    assert s.phase is Phase.PROGRESSING and s.shadowed_at is None
    assert s.message is not None and s.message.endswith(
        "runs until 12:01:00Z, latest analysis Pass"
    )
    assert s.analysis[-1].step == SHADOW_STEP
    assert d.actions == []


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("promote", [False, True])
def test_without_slos_or_agreement_it_is_evaluated_once_the_duration_elapsed(
    router: Router, promote: bool
) -> None:
    m = md(router)
    now = T0 + DURATION
    d = tick(m, shadowing(), now=now, annotations=PROMOTE if promote else None, **mirroring(m))
    s = d.status
    assert s.phase is Phase.EVALUATED and reason(s) == cond.SHADOW_PASSED
    assert s.phase.is_terminal and s.completed_at == now and s.shadowed_at == now
    assert s.mirror_percent is None and (s.weight, s.desired_weight) == (0, 0)
    assert (s.message or "").startswith("shadow passed: 'fraud-v2' answered copies")
    assert "not promoted (strategy shadow)" in (s.message or "")
    assert stable_only(the_route(d))  # the mirror is gone
    assert kept_until_unrouted(d)
    assert SetActive(None) in d.actions  # the slot is free for the next release
    assert not touches_stable(d.actions)
    assert not any(isinstance(a, RecordStable) for a in d.actions)
    assert d.look_again_at is None
    # Terminal: a later tick decides nothing more.
    later = tick(m, s.model_dump(by_alias=True, mode="json"), now=now, **mirroring(m))
    assert later.actions == [] and later.status.phase is Phase.EVALUATED


def test_just_before_the_duration_ends_it_still_runs() -> None:
    m = md()
    d = tick(m, shadowing(), now=T0 + DURATION - timedelta(seconds=1), **mirroring(m))
    assert d.status.phase is Phase.PROGRESSING and "runs until 12:01:00Z" in (
        d.status.message or ""
    )


def test_the_stable_is_given_its_full_size_back_if_it_lost_pods_never_shrunk() -> None:
    m = md()
    world = mirroring(m)
    world["deployments"]["fraud-v1"] = deployment("fraud-v1", ready=3, replicas=3)
    d = tick(m, shadowing(reached=None), **world)
    assert ScaleDeployment("fraud-fraud-v1", 4) in d.actions
    assert not any(isinstance(a, ScaleDeployment) and a.replicas < 3 for a in d.actions)


# ---------------------------------------------------------------- analysis gates the verdict


@pytest.mark.parametrize("router", ROUTERS)
def test_with_slos_the_elapsed_duration_waits_for_a_passing_analysis(router: Router) -> None:
    m = md(router, slos=SLOS)
    d = tick(m, shadowing(), now=T0 + DURATION + timedelta(seconds=1), **mirroring(m))
    assert d.status.phase is Phase.PROGRESSING
    assert d.status.message is not None
    assert d.status.message.endswith("duration done; waiting for evidence: no analysis yet")


@pytest.mark.parametrize(
    "history",
    [
        [record(0, "Pass", T0 - timedelta(seconds=1))],  # before the mirror was live
        [record(0, "Pass", T0)],  # in the tick it went live: measured before it
        [record(1, "Pass", T0 + timedelta(seconds=30))],  # another step's
        [record(0, "Pass", T0 + timedelta(seconds=20)), record(0, "Inconclusive", T0 + DURATION)],
    ],
    ids=["before", "same-tick", "other-step", "latest-not-pass"],
)
def test_only_the_latest_analysis_of_the_shadow_after_the_mirror_went_live_counts(
    history: list[dict[str, Any]],
) -> None:
    m = md(slos=SLOS)
    status = shadowing(analysis=history)
    d = tick(m, status, now=T0 + DURATION + timedelta(seconds=2), **mirroring(m))
    assert d.status.phase is Phase.PROGRESSING


@pytest.mark.parametrize("router", ROUTERS)
def test_a_passing_analysis_after_the_duration_evaluates_it(router: Router) -> None:
    m = md(router, slos=SLOS)
    now = T0 + DURATION + timedelta(seconds=5)
    d = tick(m, shadowing(), now=now, analysis=[result(Verdict.PASS)], **mirroring(m))
    assert d.status.phase is Phase.EVALUATED
    assert [(r.step, r.verdict) for r in d.status.analysis] == [(SHADOW_STEP, Verdict.PASS)]
    assert stable_only(the_route(d))
    assert kept_until_unrouted(d) and not touches_stable(d.actions)


def test_a_passing_analysis_recorded_earlier_in_the_phase_evaluates_it() -> None:
    m = md(slos=SLOS)
    status = shadowing(analysis=[record(0, "Pass", T0 + timedelta(seconds=40))])
    d = tick(m, status, now=T0 + DURATION, **mirroring(m))
    assert d.status.phase is Phase.EVALUATED


def test_min_agreement_alone_gates_the_verdict() -> None:
    m = md()
    agree = {**SHADOW, "minAgreement": 0.95}
    now = T0 + DURATION
    waits = tick(m, shadowing(), now=now, shadow=agree, **mirroring(m))
    assert waits.status.phase is Phase.PROGRESSING
    assert "waiting for evidence" in (waits.status.message or "")
    passes = tick(
        m, shadowing(), now=now, shadow=agree, analysis=[result(Verdict.PASS)], **mirroring(m)
    )
    assert passes.status.phase is Phase.EVALUATED
    running = tick(m, shadowing(), now=T0 + timedelta(seconds=9), shadow=agree, **mirroring(m))
    assert (running.status.message or "").endswith("runs until 12:01:00Z, latest analysis pending")


@pytest.mark.parametrize("router", ROUTERS)
def test_a_sequential_failure_rolls_back_at_once(router: Router) -> None:
    m = md(router, slos=SLOS)
    now = T0 + timedelta(seconds=10)  # long before the duration ends
    d = tick(
        m, shadowing(), now=now, analysis=[result(Verdict.FAIL, judge="sequential")], **mirroring(m)
    )
    s = d.status
    assert s.phase is Phase.ROLLED_BACK and reason(s) == cond.SLO_FAILED
    assert s.completed_at == now and (s.weight, s.desired_weight) == (0, 0)
    assert (s.message or "").startswith("rolled back: ")
    assert "stable 'fraud-v1' keeps serving" in (s.message or "")
    assert s.analysis[-1].step == SHADOW_STEP and s.analysis[-1].verdict is Verdict.FAIL
    assert stable_only(the_route(d))  # back to the stable, no mirror
    assert kept_until_unrouted(d)
    assert SetActive(None) in d.actions and not touches_stable(d.actions)
    assert d.look_again_at is None


def test_a_threshold_failure_past_the_limit_rolls_back_too() -> None:
    m = md(slos=SLOS)
    d = tick(
        m,
        shadowing(),
        now=T0 + timedelta(seconds=10),
        analysis=[result(Verdict.FAIL)],
        **mirroring(m),
    )
    assert d.status.phase is Phase.ROLLED_BACK and reason(d.status) == cond.SLO_FAILED
    assert "1 failed analyses (limit 0" in (d.status.message or "")


def test_after_a_rollback_status_reports_no_mirror() -> None:
    m = md(slos=SLOS)
    status = shadowing(mirrorPercent=50, desiredMirrorPercent=50)
    fail = [result(Verdict.FAIL, judge="sequential")]
    d = tick(m, status, now=T0 + timedelta(seconds=10), analysis=fail, **mirroring(m))
    assert d.status.phase is Phase.ROLLED_BACK
    assert (d.status.mirror_percent, d.status.desired_mirror_percent) == (None, None)
    assert stable_only(the_route(d))


# ---------------------------------------------------------------- controls


@pytest.mark.parametrize("router", ROUTERS)
def test_abort_rolls_back_and_removes_the_mirror(router: Router) -> None:
    m = md(router)
    d = tick(m, shadowing(), now=T0 + timedelta(seconds=10), annotations=ABORT, **mirroring(m))
    assert d.status.phase is Phase.ROLLED_BACK and reason(d.status) == cond.ABORTED
    assert "aborted by annotation" in (d.status.message or "")
    assert stable_only(the_route(d))
    assert kept_until_unrouted(d) and SetActive(None) in d.actions
    assert not touches_stable(d.actions)


def test_promote_on_a_shadow_release_is_ignored_and_says_so() -> None:
    m = md()
    d = tick(m, shadowing(), now=T0 + timedelta(seconds=10), annotations=PROMOTE, **mirroring(m))
    s = d.status
    assert s.phase is Phase.PROGRESSING and s.step == SHADOW_STEP
    assert (s.message or "").endswith(
        "(a shadow release is never promoted; the promote annotation is ignored)"
    )
    assert d.actions == []
    waiting = tick(m, shadowing(reached=None), annotations=PROMOTE, **mirroring(m, ready=0))
    assert "the promote annotation is ignored" in (waiting.status.message or "")
    assert not any(isinstance(a, RecordStable) for a in waiting.actions)


def test_pause_holds_the_shadow_and_keeps_the_mirror() -> None:
    m = md()
    d = tick(m, shadowing(), now=T0 + DURATION * 2, annotations=PAUSE, **mirroring(m))
    assert d.status.phase is Phase.PAUSED and reason(d.status) == cond.PAUSED_MANUALLY
    assert d.status.message == "paused by annotation slipway.dev/paused in the shadow phase"
    assert d.actions == [] and d.status.mirror_percent == 50


def test_unmeasurable_analyses_past_the_limit_hold_the_shadow() -> None:
    m = md(slos=SLOS)
    status = shadowing(inconclusives=1)
    d = tick(
        m,
        status,
        now=T0 + timedelta(seconds=10),
        analysis=[result(Verdict.INCONCLUSIVE)],
        **mirroring(m),
    )
    assert d.status.phase is Phase.PAUSED and reason(d.status) == cond.HELD_INCONCLUSIVE
    assert (d.status.message or "").startswith("held: 2 inconclusive analyses in a row")


def test_evidence_still_gathering_never_holds_the_shadow() -> None:
    m = md(slos=SLOS)
    gathering = [result(Verdict.INCONCLUSIVE, gathering=True)]
    d = tick(
        m,
        shadowing(inconclusives=1),
        now=T0 + timedelta(seconds=10),
        analysis=gathering,
        **mirroring(m),
    )
    assert d.status.phase is Phase.PROGRESSING and d.status.inconclusives == 0


# ---------------------------------------------------------------- losing the mirror, deadlines


@pytest.mark.parametrize("router", ROUTERS)
def test_a_mirror_lost_mid_phase_restarts_the_clock_and_is_put_back(router: Router) -> None:
    m = md(router)
    lost_at = T0 + timedelta(seconds=50)
    world = mirroring(m, plan=AT_REST)  # someone removed the mirror by hand
    d = tick(m, shadowing(), now=lost_at, **world)
    s = d.status
    assert s.weight_reached_at is None and s.step_started_at == lost_at
    assert s.phase is Phase.PROGRESSING and s.mirror_percent == 0
    assert "waiting for the mirror of 50%" in (s.message or "")
    assert the_route(d).mirror == ("fraud-fraud-v2", 50)
    # Back an instant later: the duration counts from then, not from T0.
    back = tick(
        m,
        s.model_dump(by_alias=True, mode="json"),
        now=lost_at + timedelta(seconds=1),
        **mirroring(m),
    )
    assert back.status.weight_reached_at == lost_at + timedelta(seconds=1)
    later = tick(
        m,
        back.status.model_dump(by_alias=True, mode="json"),
        now=T0 + DURATION + timedelta(seconds=5),
        **mirroring(m),
    )
    assert later.status.phase is Phase.PROGRESSING  # would have passed on the old clock
    assert "runs until 12:01:51Z" in (later.status.message or "")


@pytest.mark.parametrize("router", ROUTERS)
def test_a_mirror_never_live_within_the_deadline_rolls_back_with_the_reason(router: Router) -> None:
    m = md(router)
    world = mirroring(m)
    world["route"] = live_route(m, MIRRORED, accepted=False, why="no listener")
    if router is Router.ISTIO:
        world["route"] = live_route(m, AT_REST)  # istio: the mirror never made it
    at_deadline = tick(m, shadowing(reached=None), now=T0 + DEADLINE, **world)
    assert at_deadline.status.phase is Phase.PROGRESSING
    d = tick(m, shadowing(reached=None), now=T0 + DEADLINE + timedelta(seconds=1), **world)
    s = d.status
    assert s.phase is Phase.ROLLED_BACK and reason(s) == cond.PROGRESS_DEADLINE_EXCEEDED
    assert "the mirror of 50% to 'fraud-v2' was not live within progressDeadline 5m" in (
        s.message or ""
    )
    if router is Router.GATEWAY_API:
        assert "(HTTPRoute 'fraud' generation 3 is not accepted: Gateway web: Accepted=False" in (
            s.message or ""
        )
    assert all(r.mirror is None for r in routes(d))
    assert kept_until_unrouted(d) and not touches_stable(d.actions)


def overdue_status() -> dict[str, Any]:
    last = record(0, "Inconclusive", T0 + DURATION + DEADLINE)
    last["slos"] = [
        {
            "slo": "latency",
            "verdict": "Inconclusive",
            "samples": 120,
            "samplesNeeded": 400,
            "etaSeconds": 90,
            "gathering": True,
        }
    ]
    return shadowing(analysis=[last], verdict="Inconclusive")


def test_overdue_without_a_passing_analysis_holds_by_default() -> None:
    m = md(slos=SLOS)
    on_time = tick(m, overdue_status(), now=T0 + DURATION + DEADLINE, **mirroring(m))
    assert on_time.status.phase is Phase.PROGRESSING
    assert "duration done; waiting for evidence: latency has 120 of ~400 samples" in (
        on_time.status.message or ""
    )
    d = tick(
        m, overdue_status(), now=T0 + DURATION + DEADLINE + timedelta(seconds=1), **mirroring(m)
    )
    assert d.status.phase is Phase.PAUSED and reason(d.status) == cond.NOT_ENOUGH_EVIDENCE
    assert (d.status.message or "").startswith(
        "held: shadow: no passing analysis within progressDeadline 5m after 1m"
        " (latency has 120 of ~400 samples"
    )
    assert d.actions == []  # the mirror stays while it waits


def test_overdue_without_a_passing_analysis_rolls_back_when_the_tier_says_so() -> None:
    m = md(slos=SLOS, analysis={**ANALYSIS, "onInconclusive": "rollback"})
    d = tick(
        m, overdue_status(), now=T0 + DURATION + DEADLINE + timedelta(seconds=1), **mirroring(m)
    )
    assert d.status.phase is Phase.ROLLED_BACK and reason(d.status) == cond.NOT_ENOUGH_EVIDENCE
    assert "no passing analysis within progressDeadline 5m" in (d.status.message or "")
    assert stable_only(the_route(d))


def test_a_held_overdue_shadow_resumes_when_analysis_passes() -> None:
    m = md(slos=SLOS)
    status = {**overdue_status(), "phase": "Paused"}
    now = T0 + DURATION + DEADLINE + timedelta(seconds=30)
    d = tick(m, status, now=now, analysis=[result(Verdict.PASS)], **mirroring(m))
    assert d.status.phase is Phase.EVALUATED


def test_the_end_of_the_shadow_duration_is_the_next_look() -> None:
    m = md(shadow={"mirrorPercent": 50, "duration": "5s"})
    d = tick(m, shadowing(), now=T0 + timedelta(seconds=1), shadow=None, **mirroring(m))
    assert d.status.phase is Phase.PROGRESSING
    assert d.look_again_at == T0 + timedelta(seconds=5)


# ---------------------------------------------------------------- gate


def gate_situation(
    m: ModelDeployment, step: int | None, strategy: str = "canary", **kw: Any
) -> Situation:
    status: dict[str, Any] = {"phase": "Progressing", "strategy": strategy, "steps": STEPS["steps"]}
    if step is not None:
        status["step"] = step
    deps = {
        "fraud-v1": deployment("fraud-v1", 4, 4),
        "fraud-v2": deployment("fraud-v2", 2, 2),
    }
    return situation(m, status, strategy=strategy, deployments=deps, **kw)


@pytest.mark.parametrize("strategy", ["shadow", "canary", "blueGreen"])
def test_min_agreement_without_slos_is_analysed_in_the_shadow_step(strategy: str) -> None:
    m = md()
    agree = {**SHADOW, "minAgreement": 0.9}
    s = gate_situation(m, SHADOW_STEP, strategy, shadow=agree)
    assert agreement_checked(s, m)
    assert analysis_applies(s, m)
    assert analysis_due(s)  # the candidate has ready pods and no analysis yet
    # Without it, and without SLOs, there is nothing to analyse.
    plain = gate_situation(m, SHADOW_STEP, strategy)
    assert not agreement_checked(plain, m) and not analysis_applies(plain, m)
    assert not analysis_due(plain)


def test_agreement_is_only_checked_in_the_shadow_step() -> None:
    m = md()
    agree = {**SHADOW, "minAgreement": 0.9}
    for step in (None, 1, 2):
        s = gate_situation(m, step, shadow=agree)
        assert not agreement_checked(s, m)
        assert not analysis_applies(s, m)


def test_agreement_comes_from_the_models_shadow_when_the_release_has_none() -> None:
    m = md(shadow={"minAgreement": 0.8})
    s = gate_situation(m, SHADOW_STEP, shadow=None)
    assert agreement_checked(s, m) and analysis_applies(s, m)


def test_slos_are_analysed_in_the_shadow_step_of_every_strategy() -> None:
    m = md(slos=SLOS)
    for strategy in ("shadow", "canary", "blueGreen"):
        assert analysis_applies(gate_situation(m, SHADOW_STEP, strategy), m)
    held = gate_situation(m, SHADOW_STEP, "canary")
    held.release.status.phase = Phase.PAUSED
    assert analysis_applies(held, m)
    held.release.status.phase = Phase.EVALUATED
    assert not analysis_applies(held, m)


def test_no_analysis_while_the_candidate_has_no_ready_pod() -> None:
    m = md(slos=SLOS)
    s = gate_situation(m, SHADOW_STEP, "shadow")
    cold = Situation(
        release=s.release,
        model=m,
        siblings=(),
        deployments={"fraud-v2": deployment("fraud-v2", 0, 2)},
        now=T0,
    )
    assert analysis_applies(cold, m) and not analysis_due(cold)


def test_record_analysis_files_the_shadows_results_under_step_0() -> None:
    m = md(slos=SLOS)
    s = gate_situation(m, SHADOW_STEP, "canary", analysis=[result(Verdict.PASS)])
    status = s.release.status.model_copy(deep=True)
    t = record_analysis(s, status, m, analysis_settings(m))
    assert t.rollback is None and t.held is None
    assert [(r.step, r.verdict, r.at) for r in status.analysis] == [(0, Verdict.PASS, T0)]
    assert status.verdict is Verdict.PASS


def test_shadow_for_prefers_the_releases_then_the_models_then_defaults_when_required() -> None:
    m = md(shadow={"mirrorPercent": 20})
    own = situation(m, strategy="canary", shadow={"mirrorPercent": 30})
    assert shadow_for(own, m) == ShadowSpec(mirror_percent=30)
    assert shadow_for(situation(m, strategy="canary", shadow=None), m) == ShadowSpec(
        mirror_percent=20
    )
    bare = md()
    assert shadow_for(situation(bare, strategy="canary", shadow=None), bare) is None
    assert shadow_for(situation(bare, strategy="shadow", shadow=None), bare) == ShadowSpec()
    required = policy(requireShadow=True)
    s = situation(bare, strategy="blueGreen", shadow=None, policy=required)
    assert shadow_for(s, bare) == ShadowSpec()


def policy(**spec: Any) -> RolloutPolicy:
    return RolloutPolicy.model_validate({"metadata": {"name": "medium"}, "spec": spec})


# ---------------------------------------------------------------- shadow before a canary


SOURCES: dict[str, dict[str, Any]] = {
    "model": {"model": {"shadow": SHADOW}, "release": {"shadow": None}},
    "release": {"model": {}, "release": {"shadow": SHADOW}},
    "policy": {
        "model": {},
        "release": {"shadow": None, "policy": policy(requireShadow=True)},
    },
}


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("source", list(SOURCES))
def test_a_canary_with_a_shadow_starts_with_it(router: Router, source: str) -> None:
    m = md(router, active=None, **SOURCES[source]["model"])
    world = at_rest(m)
    d = tick(m, None, strategy="canary", **SOURCES[source]["release"], **world)
    s = d.status
    percent = 100 if source == "policy" else 50
    assert s.phase is Phase.PROGRESSING and reason(s) == cond.SHADOWING
    assert (s.strategy, s.step, s.step_label) == (Strategy.CANARY, SHADOW_STEP, "shadow")
    assert [x.weight for x in s.steps or []] == [25, 50]  # recorded at the start
    assert s.desired_mirror_percent == percent
    assert untouched_for_now(d, world)  # no copy before a candidate pod is ready
    assert applied(d, "Deployment")[0]["spec"]["replicas"] == (4 if percent == 100 else 2)
    assert SetActive("fraud-v2") in d.actions and not touches_stable(d.actions)
    # Its pods ready, the next tick mirrors; still at the shadow step.
    status = s.model_dump(by_alias=True, mode="json")
    world = carried_out(m, world, d)
    nxt = tick(m, status, strategy="canary", **SOURCES[source]["release"], **world)
    assert (nxt.status.step, nxt.status.weight) == (SHADOW_STEP, 0)
    assert the_route(nxt).mirror == ("fraud-fraud-v2", percent)
    assert the_route(nxt).backends == (("fraud-fraud-v1", 100),)
    assert not touches_stable(nxt.actions)


@pytest.mark.parametrize("router", ROUTERS)
def test_a_passed_shadow_starts_the_first_canary_step_in_the_same_tick(router: Router) -> None:
    m = md(router, shadow=SHADOW)
    now = T0 + DURATION
    world = mirroring(m)  # the shadow's 2 ready pods: enough for 25 % of 4 (1 pod)
    d = tick(m, shadowing(strategy="canary"), now=now, strategy="canary", shadow=None, **world)
    s = d.status
    assert s.phase is Phase.PROGRESSING and reason(s) == cond.STEP_PROGRESSING
    assert s.shadowed_at == now
    assert (s.step, s.step_label, s.weight, s.desired_weight) == (1, "1/2", 0, 25)
    assert s.step_started_at == now and s.weight_reached_at is None
    assert (s.mirror_percent, s.desired_mirror_percent) == (None, None)
    # The candidate shrinks to its share, and already has the pods for it: the weights go
    # on the route in this tick, the mirror gone in the same write.
    assert d.actions[0] == ScaleDeployment("fraud-fraud-v2", 1)  # sized for 25 % of 4
    [route] = routes(d)
    assert route.backends == (("fraud-fraud-v1", 75), ("fraud-fraud-v2", 25))
    assert route.mirror is None
    assert len(d.actions) == 2 and not touches_stable(d.actions)
    assert (s.message or "").startswith("step 1/2: waiting for weight 25% (now 0%): ")
    assert (s.message or "").endswith("does not have the new weights yet")

    # Next tick the weights are live: the step's clock starts, nothing more is written,
    # and the canary never returns to the shadow.
    world = carried_out(m, world, d)
    later = now + timedelta(seconds=2)
    status = s.model_dump(by_alias=True, mode="json")
    nxt = tick(m, status, now=later, strategy="canary", shadow=None, **world)
    assert nxt.actions == []
    s = nxt.status
    assert (s.step, s.weight, s.weight_reached_at, s.mirror_percent) == (1, 25, later, None)
    assert (s.message or "").startswith("step 1/2: weight 25% (want 25%), pause 10s")


@pytest.mark.parametrize("router", ROUTERS)
def test_a_shrinking_candidate_is_not_said_to_wait_for_ready_pods_it_has(router: Router) -> None:
    m = md(router, shadow=SHADOW)
    world = mirroring(m)  # 2 ready pods; step 1 wants 1
    d = tick(m, shadowing(strategy="canary"), now=T0 + DURATION, strategy="canary", **world)
    assert d.status.step == 1
    assert "ready candidate pods" not in (d.status.message or "")
    # The route live with its weights before the scale-down is done: the weight is reached.
    world["route"] = live_route(m, RoutePlan((("fraud-v1", 75), ("fraud-v2", 25))))
    status = d.status.model_dump(by_alias=True, mode="json")
    later = T0 + DURATION + timedelta(seconds=2)
    nxt = tick(m, status, now=later, strategy="canary", **world)
    assert (nxt.status.weight, nxt.status.weight_reached_at) == (25, later)
    assert nxt.actions == [ScaleDeployment("fraud-fraud-v2", 1)]  # still asked, nothing else


def test_a_canary_shadow_with_slos_needs_its_own_pass_and_step_1_needs_another() -> None:
    m = md(slos=SLOS)
    now = T0 + DURATION
    waits = tick(m, shadowing(strategy="canary"), now=now, strategy="canary", **mirroring(m))
    assert waits.status.step == SHADOW_STEP and waits.status.phase is Phase.PROGRESSING
    d = tick(
        m,
        shadowing(strategy="canary"),
        now=now,
        strategy="canary",
        analysis=[result(Verdict.PASS)],
        **mirroring(m),
    )
    s = d.status
    assert s.step == 1 and s.shadowed_at == now
    assert [r.step for r in s.analysis] == [SHADOW_STEP]  # filed under the shadow, not step 1
    # Step 1, its weight live and its pause over: the shadow's pass does not count.
    world = mirroring(m, plan=RoutePlan((("fraud-v1", 75), ("fraud-v2", 25))), pods=1)
    status = s.model_dump(by_alias=True, mode="json")
    status["weightReachedAt"] = now.isoformat()
    later = tick(m, status, now=now + timedelta(seconds=11), strategy="canary", **world)
    assert later.status.step == 1
    assert "waiting for the first analysis at this weight" in (later.status.message or "")


def test_a_canary_shadow_that_fails_rolls_back_without_any_user_seeing_it() -> None:
    m = md(Router.GATEWAY_API, slos=SLOS)
    fail = [result(Verdict.FAIL, judge="sequential")]
    d = tick(
        m,
        shadowing(strategy="canary"),
        now=T0 + timedelta(seconds=5),
        strategy="canary",
        analysis=fail,
        **mirroring(m),
    )
    assert d.status.phase is Phase.ROLLED_BACK and d.status.shadowed_at is None
    assert stable_only(the_route(d))
    assert kept_until_unrouted(d) and not touches_stable(d.actions)


def test_promote_during_a_canarys_shadow_skips_to_the_promotion() -> None:
    m = md()
    world = mirroring(m)
    now = T0 + timedelta(seconds=5)
    d = tick(
        m, shadowing(strategy="canary"), now=now, strategy="canary", annotations=PROMOTE, **world
    )
    s = d.status
    assert s.step == 3 and s.step_label == "promoting"
    assert d.actions == [ScaleDeployment("fraud-fraud-v2", 4)]
    assert untouched_for_now(d, world)  # 2 of 4 pods: no request goes to it yet
    assert "waiting for 2/4 ready candidate pods before the route changes" in (s.message or "")
    # Once all four are ready, every request goes to it, the mirror gone, in one write.
    status = s.model_dump(by_alias=True, mode="json")
    world = carried_out(m, world, d)
    nxt = tick(
        m, status, now=now + timedelta(seconds=2), strategy="canary", annotations=PROMOTE, **world
    )
    assert nxt.status.step == 3
    route = the_route(nxt)
    assert route.backends == (("fraud-fraud-v2", 100),) and route.mirror is None
    assert not touches_stable(nxt.actions)  # the old stable goes only once promoted


def test_a_canary_already_shadowed_starts_at_step_1() -> None:
    m = md(shadow=SHADOW)
    status = {"shadowedAt": T0.isoformat()}
    d = tick(m, status, strategy="canary", shadow=None, **at_rest(m))
    assert d.status.step == 1 and all(r.mirror is None for r in routes(d))


# ---------------------------------------------------------------- shadow before a blue-green


@pytest.mark.parametrize("router", ROUTERS)
def test_a_blue_green_with_a_shadow_starts_with_it(router: Router) -> None:
    m = md(router, active=None, shadow=SHADOW)
    world = at_rest(m)
    d = tick(m, None, strategy="blueGreen", shadow=None, **world)
    assert (d.status.step, d.status.step_label) == (SHADOW_STEP, "shadow")
    assert untouched_for_now(d, world)
    assert applied(d, "Deployment")[0]["spec"]["replicas"] == 2
    assert [b["metadata"]["name"] for b in applied(d, "Service")] == ["fraud-fraud-v2"]
    status = d.status.model_dump(by_alias=True, mode="json")
    nxt = tick(m, status, strategy="blueGreen", shadow=None, **carried_out(m, world, d))
    assert (nxt.status.step, nxt.status.step_label) == (SHADOW_STEP, "shadow")
    assert the_route(nxt).mirror == ("fraud-fraud-v2", 50)
    assert the_route(nxt).backends == (("fraud-fraud-v1", 100),)
    assert not applied(nxt, "Service")  # no preview Service during the shadow


@pytest.mark.parametrize("router", ROUTERS)
def test_the_preview_starts_once_the_shadow_passed(router: Router) -> None:
    m = md(router, shadow=SHADOW, blueGreen={"autoPromotion": False})
    now = T0 + DURATION
    world = mirroring(m)
    d = tick(
        m, shadowing(strategy="blueGreen"), now=now, strategy="blueGreen", shadow=None, **world
    )
    s = d.status
    assert s.shadowed_at == now
    assert (s.step, s.step_label, s.weight) == (1, "preview", 0)
    assert s.step_started_at == now and s.switched_at is None
    assert untouched_for_now(d, world)  # the shadow's mirror stays until 4 pods are ready
    assert (s.desired_mirror_percent, s.mirror_percent) == (100, 50)  # what is live: 50
    scales = [a for a in d.actions if isinstance(a, ScaleDeployment)]
    assert scales == [ScaleDeployment("fraud-fraud-v2", 4)]  # full size, asked once
    assert not touches_stable(d.actions)
    assert "waiting for 2/4 candidate pods" in (s.message or "")
    assert reason(s) == cond.WAITING_FOR_PODS

    # At full size: every live request stays with the stable; the preview gets a copy of
    # all of them. Available, it still waits for that copy to be live.
    status = s.model_dump(by_alias=True, mode="json")
    world = carried_out(m, world, d)
    later = now + timedelta(seconds=2)
    nxt = tick(m, status, now=later, strategy="blueGreen", shadow=None, **world)
    [route] = routes(nxt)
    assert route.backends == (("fraud-fraud-v1", 100),)
    assert route.mirror == ("fraud-fraud-v2", 100)
    assert len(nxt.actions) == 1  # the route alone: no scale, no Service
    s = nxt.status
    assert (s.step, s.switched_at, s.desired_mirror_percent, s.mirror_percent) == (1, None, 100, 50)
    assert s.weight_reached_at is None and reason(s) == cond.STEP_PROGRESSING
    assert s.message == (
        "preview available; waiting for the mirror of live traffic: "
        f"{world['route'].named} does not have the new weights yet"
    )

    # The mirror live: its clock starts, nothing is written, it waits for the promote.
    status = s.model_dump(by_alias=True, mode="json")
    world = carried_out(m, world, nxt)
    live = later + timedelta(seconds=2)
    again = tick(m, status, now=live, strategy="blueGreen", shadow=None, **world)
    assert again.actions == []
    s = again.status
    assert (s.step, s.switched_at, s.mirror_percent, s.weight_reached_at) == (1, None, 100, live)
    assert "waiting for `slipway promote`" in (s.message or "")


def test_the_preview_service_comes_after_a_shadow_too() -> None:
    m = md(shadow=SHADOW, blueGreen={"autoPromotion": False})
    world = mirroring(m)
    now = T0 + DURATION
    d = tick(
        m, shadowing(strategy="blueGreen"), now=now, strategy="blueGreen", shadow=None, **world
    )
    assert d.status.step == 1
    assert [b["metadata"]["name"] for b in applied(d, "Service")] == [preview_service_name("fraud")]
    # Once it exists as wanted it is not applied again.
    status = d.status.model_dump(by_alias=True, mode="json")
    world = carried_out(m, world, d)
    nxt = tick(m, status, now=now, strategy="blueGreen", shadow=None, **world)
    assert nxt.status.step == 1 and not applied(nxt, "Service")


FULL_MIRROR = RoutePlan((("fraud-v1", 100),), ("fraud-v2", 100))


def previewing(
    m: ModelDeployment, route: LiveRoute, **extra: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A blue-green preview after its shadow: status, and the world with the candidate at
    full size and ready, its preview Service in place and ``route`` live."""
    status = shadowing(strategy="blueGreen", reached=None, step=1, stepLabel="preview")
    status.update(shadowedAt=T0.isoformat(), desiredMirrorPercent=100, **extra)
    world = mirroring(m, FULL_MIRROR, pods=4)
    world["route"] = route
    preview = build_preview_service(m, "fraud-v2")
    world["services"][preview["metadata"]["name"]] = service_fingerprint(preview)
    return status, world


@pytest.mark.parametrize("router", ROUTERS)
def test_a_preview_that_switches_at_once_writes_the_route_once_per_tick(router: Router) -> None:
    m = md(router, shadow=SHADOW)  # no SLOs, autoPromotion without delay
    world = mirroring(m)  # the shadow passed: its mirror live, the candidate at 2 pods
    d = tick(m, shadowing(strategy="blueGreen"), now=T0 + DURATION, strategy="blueGreen", **world)
    assert d.status.step == 1 and routes(d) == []
    # At full size: the mirror, and no switch before it is live.
    status = d.status.model_dump(by_alias=True, mode="json")
    world = carried_out(m, world, d)
    now = T0 + DURATION + timedelta(seconds=2)
    nxt = tick(m, status, now=now, strategy="blueGreen", **world)
    assert nxt.status.switched_at is None and nxt.status.weight_reached_at is None
    assert the_route(nxt).mirror == ("fraud-fraud-v2", 100)
    # The mirror live: it switches at once, in one write.
    status = nxt.status.model_dump(by_alias=True, mode="json")
    world = carried_out(m, world, nxt)
    now += timedelta(seconds=2)
    last = tick(m, status, now=now, strategy="blueGreen", **world)
    assert (last.status.step, last.status.switched_at, last.status.weight_reached_at) == (
        2,
        None,
        None,
    )  # written, not claimed before its data plane took it
    assert (last.status.mirror_percent, last.status.desired_mirror_percent) == (None, None)
    [route] = routes(last)
    assert route.backends == (("fraud-fraud-v2", 100),) and route.mirror is None
    # Read back (and accepted by the Gateway): claimed now, nothing more written.
    status = last.status.model_dump(by_alias=True, mode="json")
    world = carried_out(m, world, last)
    now += timedelta(seconds=1)
    claimed = tick(m, status, now=now, strategy="blueGreen", **world)
    assert (claimed.status.switched_at, claimed.status.weight_reached_at) == (now, now)
    assert claimed.actions == []


@pytest.mark.parametrize("router", ROUTERS)
def test_a_switch_in_the_tick_the_mirror_is_rewritten_writes_the_route_once(
    router: Router,
) -> None:
    m = md(router)
    # The mirror is live (weights and copy as planned) but its spec was edited by hand:
    # the preview's placement rewrites it, and the switch of the same tick replaces that.
    body = route_body(m, FULL_MIRROR, istio.build if router is Router.ISTIO else gatewayapi.build)
    body["metadata"]["annotations"][FINGERPRINT] = "edited-by-hand"
    status, world = previewing(m, settled(body))
    now = T0 + timedelta(seconds=5)
    d = tick(m, status, now=now, strategy="blueGreen", annotations=PROMOTE, **world)
    assert d.status.switched_at is None and d.status.step == 2
    [route] = routes(d)
    assert route.backends == (("fraud-fraud-v2", 100),) and route.mirror is None
    assert len(d.actions) == 1 and not touches_stable(d.actions)


@pytest.mark.parametrize("router", ROUTERS)
def test_the_previews_analysis_clock_starts_only_once_the_mirror_is_live(router: Router) -> None:
    m = md(router, slos=SLOS)
    # Available at full size, the route not yet carrying the copy: a pass now judged
    # no live traffic, and neither counts nor starts the clock.
    status, world = previewing(m, live_route(m, MIRRORED))
    early = T0 + timedelta(seconds=5)
    d = tick(m, status, now=early, strategy="blueGreen", analysis=[result(Verdict.PASS)], **world)
    s = d.status
    assert s.weight_reached_at is None and s.switched_at is None
    assert (s.mirror_percent, s.desired_mirror_percent) == (50, 100)
    assert (s.message or "").startswith("preview available; waiting for the mirror of live")
    assert the_route(d).mirror == ("fraud-fraud-v2", 100)
    assert [(r.step, r.verdict, r.at) for r in s.analysis] == [(1, Verdict.PASS, early)]
    # The mirror live: the clock starts now; the earlier pass does not switch it.
    world = carried_out(m, world, d)
    live = early + timedelta(seconds=5)
    status = s.model_dump(by_alias=True, mode="json")
    nxt = tick(m, status, now=live, strategy="blueGreen", **world)
    s = nxt.status
    assert (s.weight_reached_at, s.switched_at, s.mirror_percent) == (live, None, 100)
    assert s.message == "preview analysis has not passed: latest analysis Pass; waiting"
    assert nxt.actions == []
    # Only a pass after it does.
    status = s.model_dump(by_alias=True, mode="json")
    later = live + timedelta(seconds=5)
    done = tick(
        m, status, now=later, strategy="blueGreen", analysis=[result(Verdict.PASS)], **world
    )
    assert done.status.step == 2 and done.status.step_started_at == later
    assert done.status.switched_at is None  # claimed once read back
    assert the_route(done).backends == (("fraud-fraud-v2", 100),)


def test_a_preview_mirror_never_live_within_the_deadline_rolls_back() -> None:
    m = md(Router.GATEWAY_API)
    refused = live_route(m, FULL_MIRROR, accepted=False, why="no listener")
    status, world = previewing(m, refused)
    on_time = tick(m, status, now=T0 + DEADLINE, strategy="blueGreen", **world)
    assert on_time.status.phase is Phase.PROGRESSING
    d = tick(m, status, now=T0 + DEADLINE + timedelta(seconds=1), strategy="blueGreen", **world)
    assert d.status.phase is Phase.ROLLED_BACK
    assert reason(d.status) == cond.PROGRESS_DEADLINE_EXCEEDED
    assert stable_only(the_route(d)) and not touches_stable(d.actions)


@pytest.mark.parametrize("router", ROUTERS)
def test_promote_during_a_blue_greens_shadow_skips_it(router: Router) -> None:
    m = md(router, shadow=SHADOW, slos=SLOS)  # the preview then waits for its analysis
    now = T0 + timedelta(seconds=10)
    world = mirroring(m)
    d = tick(
        m,
        shadowing(strategy="blueGreen"),
        now=now,
        strategy="blueGreen",
        shadow=None,
        annotations=PROMOTE,
        **world,
    )
    s = d.status
    assert (s.step, s.step_label) == (1, "preview")
    assert s.shadowed_at is None and s.phase is Phase.PROGRESSING
    assert untouched_for_now(d, world)  # the shadow's mirror stays until 4 pods are ready
    assert ScaleDeployment("fraud-fraud-v2", 4) in d.actions
    assert not touches_stable(d.actions)
    assert "the promote annotation is ignored" not in (s.message or "")
    # At full size, the preview's mirror (not the shadow's) goes on the route; the
    # annotation, still there, switches neither before it is live nor, after, before the
    # preview's analysis passed.
    status = s.model_dump(by_alias=True, mode="json")
    world = carried_out(m, world, d)
    later = now + timedelta(seconds=2)
    nxt = tick(
        m, status, now=later, strategy="blueGreen", shadow=None, annotations=PROMOTE, **world
    )
    assert (nxt.status.step, nxt.status.switched_at) == (1, None)
    assert "waiting for the mirror of live traffic" in (nxt.status.message or "")
    route = the_route(nxt)
    assert route.backends == (("fraud-fraud-v1", 100),)
    assert route.mirror == ("fraud-fraud-v2", 100)
    assert not touches_stable(nxt.actions)
    status = nxt.status.model_dump(by_alias=True, mode="json")
    world = carried_out(m, world, nxt)
    again = tick(
        m, status, now=later, strategy="blueGreen", shadow=None, annotations=PROMOTE, **world
    )
    assert (again.status.step, again.status.switched_at) == (1, None)
    assert again.status.message == "preview analysis has not passed: no analysis yet; waiting"
    assert again.actions == []


@pytest.mark.parametrize("mirror", [50, 100])
def test_promote_during_a_long_shadow_gives_the_preview_its_own_clock(mirror: int) -> None:
    m = md(slos=SLOS, analysis={**ANALYSIS, "onInconclusive": "rollback"})
    pods = 4 if mirror == 100 else 2
    plan = RoutePlan((("fraud-v1", 100),), ("fraud-v2", mirror))
    now = T0 + timedelta(minutes=20)  # a long shadow, promoted by hand
    d = tick(
        m,
        shadowing(strategy="blueGreen"),
        now=now,
        strategy="blueGreen",
        shadow={"mirrorPercent": mirror, "duration": "30m"},
        annotations=PROMOTE,
        **mirroring(m, plan=plan, pods=pods),
    )
    assert d.status.step == 1
    assert d.status.phase is Phase.PROGRESSING, d.status.message
    assert d.status.step_started_at == now


def test_a_blue_green_shadow_that_fails_leaves_the_stable_serving_everything() -> None:
    m = md(Router.GATEWAY_API, slos=SLOS, shadow=SHADOW)
    fail = [result(Verdict.FAIL, judge="sequential")]
    d = tick(
        m,
        shadowing(strategy="blueGreen"),
        now=T0 + timedelta(seconds=5),
        strategy="blueGreen",
        shadow=None,
        analysis=fail,
        **mirroring(m),
    )
    assert d.status.phase is Phase.ROLLED_BACK and d.status.switched_at is None
    assert stable_only(the_route(d))
    assert kept_until_unrouted(d) and not touches_stable(d.actions)


def test_mirror_and_status_survive_a_round_trip_through_json() -> None:
    m = md()
    d = tick(m, shadowing(reached=None), **mirroring(m))
    again = ModelReleaseStatus.model_validate(
        copy.deepcopy(d.status.model_dump(by_alias=True, mode="json"))
    )
    assert again.mirror_percent == 50 and again.desired_mirror_percent == 50
    assert again.step == SHADOW_STEP
