"""The decision core for first releases and the direct strategy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from slipway.api import conditions as cond
from slipway.api.models import ModelDeployment
from slipway.api.phases import Phase
from slipway.kube.children import build_release_service, build_service
from slipway.kube.fingerprint import service_fingerprint
from slipway.rollout.core import (
    ApplyObject,
    DeleteDeployment,
    RecordStable,
    ScaleDeployment,
    SetActive,
    Situation,
)
from slipway.rollout.release import decide, in_flight_blocker
from slipway.traffic.replicas import achieved_weight
from tests.unit.factories import T0, deployment, model, release, sibling


def situation(**kwargs: object) -> Situation:
    """The model's Service and the releases' own Services read back as the operator keeps
    them (every pod of the model; each release's pods)."""
    md = kwargs.get("model", model())
    services: dict[str, str] = {}
    if isinstance(md, ModelDeployment):
        bodies = [build_service(md, None)]
        bodies += [build_release_service(md, r) for r in ("fraud-v1", "fraud-v2")]
        services = {b["metadata"]["name"]: service_fingerprint(b) for b in bodies}
    defaults: dict[str, object] = {
        "release": release(),
        "model": model(),
        "siblings": (),
        "deployments": {},
        "now": T0,
        "services": services,
    }
    defaults.update(kwargs)
    return Situation(**defaults)  # type: ignore[arg-type]


def ready_reason(decision_status: object) -> str:
    conditions = decision_status.conditions  # type: ignore[attr-defined]
    return next(c.reason for c in conditions if c.type == cond.READY)


def test_missing_model_deployment_waits_with_reason() -> None:
    decision = decide(situation(model=None))
    assert decision.status.phase == Phase.PENDING
    assert ready_reason(decision.status) == cond.DEPLOYMENT_NOT_FOUND
    assert "'fraud' does not exist" in (decision.status.message or "")
    assert decision.actions == []


def test_invalid_model_deployment_waits_and_says_why() -> None:
    decision = decide(situation(model=None, model_error="spec.port: too large"))
    assert ready_reason(decision.status) == cond.INVALID_SPEC
    assert "spec.port: too large" in (decision.status.message or "")


def test_first_release_claims_slot_and_applies_full_size_deployment() -> None:
    decision = decide(situation())
    assert decision.status.phase == Phase.PROGRESSING
    assert decision.status.started_at == T0
    assert SetActive("fraud-v2") in decision.actions
    applied = [a for a in decision.actions if isinstance(a, ApplyObject)]
    assert len(applied) == 1
    assert applied[0].body["spec"]["replicas"] == 2
    assert applied[0].body["metadata"]["name"] == "fraud-fraud-v2"


def test_first_release_of_any_strategy_is_rolled_out_directly() -> None:
    decision = decide(situation(release=release(strategy="canary")))
    assert decision.status.phase == Phase.PROGRESSING


def test_no_reapply_when_deployment_already_matches() -> None:
    status = {"phase": "Progressing", "startedAt": T0.isoformat()}
    decision = decide(
        situation(
            release=release(status=status),
            model=model(active="fraud-v2"),
            deployments={"fraud-v2": deployment("fraud-v2", ready=1)},
            now=T0 + timedelta(seconds=5),
        )
    )
    assert decision.actions == []
    assert decision.status.phase == Phase.PROGRESSING
    assert "1/2" in (decision.status.message or "")


def test_available_first_release_becomes_stable() -> None:
    decision = decide(
        situation(
            release=release(status={"phase": "Progressing", "startedAt": T0.isoformat()}),
            model=model(active="fraud-v2"),
            deployments={"fraud-v2": deployment("fraud-v2", ready=2)},
            now=T0 + timedelta(seconds=9),
        )
    )
    assert decision.status.phase == Phase.SUCCEEDED
    assert decision.status.weight == 100
    assert decision.status.completed_at == T0 + timedelta(seconds=9)
    records = [a for a in decision.actions if isinstance(a, RecordStable)]
    assert records and records[0].record.release == "fraud-v2"
    assert records[0].record.version == "v2"
    assert not any(isinstance(a, DeleteDeployment) for a in decision.actions)


def test_direct_release_replaces_stable_only_after_available() -> None:
    deployments = {
        "fraud-v1": deployment("fraud-v1", ready=2),
        "fraud-v2": deployment("fraud-v2", ready=1),
    }
    md = model(stable="fraud-v1", active="fraud-v2")
    waiting = decide(
        situation(release=release(strategy="direct"), model=md, deployments=deployments)
    )
    assert waiting.status.phase == Phase.PROGRESSING
    assert not any(isinstance(a, DeleteDeployment) for a in waiting.actions)
    assert waiting.status.weight == 33  # 1 of 3 ready pods

    deployments["fraud-v2"] = deployment("fraud-v2", ready=2)
    done = decide(situation(release=release(strategy="direct"), model=md, deployments=deployments))
    assert done.status.phase == Phase.SUCCEEDED
    kinds = [type(a) for a in done.actions]
    # The stable is recorded before the old one is scaled to zero (kept for rollback).
    assert kinds.index(RecordStable) < kinds.index(ScaleDeployment)
    assert ScaleDeployment("fraud-fraud-v1", 0) in done.actions
    assert not any(isinstance(a, DeleteDeployment) for a in done.actions)


def test_progress_deadline_fails_release_and_leaves_stable() -> None:
    md = model(stable="fraud-v1", active="fraud-v2", progressDeadline="30s")
    deployments = {
        "fraud-v1": deployment("fraud-v1", ready=2),
        "fraud-v2": deployment("fraud-v2", ready=0),
    }
    status = {"phase": "Progressing", "startedAt": T0.isoformat()}
    rel = release(strategy="direct", status=status)
    before = decide(
        situation(release=rel, model=md, deployments=deployments, now=T0 + timedelta(seconds=29))
    )
    assert before.status.phase == Phase.PROGRESSING
    after = decide(
        situation(release=rel, model=md, deployments=deployments, now=T0 + timedelta(seconds=31))
    )
    assert after.status.phase == Phase.FAILED
    assert ready_reason(after.status) == cond.PROGRESS_DEADLINE_EXCEEDED
    assert "'fraud-v1' keeps serving" in (after.status.message or "")
    deletes = [a.name for a in after.actions if isinstance(a, DeleteDeployment)]
    assert deletes == ["fraud-fraud-v2"]
    assert SetActive(None) in after.actions
    assert not any(isinstance(a, RecordStable) for a in after.actions)


GATEWAY = {"gatewayAPI": {"parentRefs": [{"name": "web"}]}}


def routed(router: str, **spec: Any) -> dict[str, Any]:
    """A ModelDeployment spec on ``router`` (gatewayAPI needs its Gateway)."""
    return {"router": router, **(GATEWAY if router == "gatewayAPI" else {}), **spec}


@pytest.mark.parametrize("router", ["replicas", "gatewayAPI", "istio"])
@pytest.mark.parametrize("strategy", ["direct", "canary", "blueGreen", "shadow"])
def test_every_strategy_router_pair_starts_or_is_refused_at_once(
    strategy: str, router: str
) -> None:
    md = model(stable="fraud-v1", **routed(router))
    decision = decide(situation(release=release(strategy=strategy), model=md))
    if strategy == "shadow" and router == "replicas":
        assert decision.status.phase == Phase.FAILED
        assert ready_reason(decision.status) == cond.ROUTER_NOT_SUPPORTED
        assert "needs mirror, which router 'replicas' cannot do" in (decision.status.message or "")
        assert "'fraud-v1' keeps serving" in (decision.status.message or "")
        assert decision.actions == [] and decision.look_again_at is None
    else:
        assert decision.status.phase == Phase.PROGRESSING
        assert decision.actions  # it started: something was created or claimed


@pytest.mark.parametrize("strategy", ["canary", "blueGreen"])
def test_a_shadow_phase_on_a_router_that_cannot_mirror_is_refused_at_once(strategy: str) -> None:
    md = model(stable="fraud-v1", shadow={"mirrorPercent": 50, "duration": "1m"})
    decision = decide(situation(release=release(strategy=strategy), model=md))
    assert decision.status.phase == Phase.FAILED
    assert ready_reason(decision.status) == cond.ROUTER_NOT_SUPPORTED
    assert "a shadow phase needs mirror" in (decision.status.message or "")


def test_a_router_that_cannot_do_what_the_strategy_needs_says_which_capability() -> None:
    from slipway.api.phases import Router, Strategy
    from slipway.traffic import refusal

    why = refusal(Strategy.SHADOW, Router.REPLICAS)
    assert why == "strategy 'shadow' needs mirror, which router 'replicas' cannot do"
    assert refusal(Strategy.CANARY, Router.REPLICAS) is None


def test_default_strategy_comes_from_model_deployment() -> None:
    md = model(stable="fraud-v1", defaultStrategy="direct")
    decision = decide(situation(model=md))
    assert decision.status.phase == Phase.PROGRESSING


@pytest.mark.parametrize("phase", ["Succeeded", "RolledBack", "Failed"])
def test_terminal_release_is_left_alone(phase: str) -> None:
    decision = decide(situation(release=release(status={"phase": phase})))
    assert decision.status.phase == Phase(phase)
    assert decision.actions == []


def test_restart_after_promotion_finishes_bookkeeping() -> None:
    md = model(stable="fraud-v2", active="fraud-v2")
    decision = decide(
        situation(
            release=release(status={"phase": "Progressing"}),
            model=md,
            deployments={"fraud-v2": deployment("fraud-v2", ready=2)},
        )
    )
    assert decision.status.phase == Phase.SUCCEEDED
    assert decision.actions == [SetActive(None)]


def test_older_release_in_flight_blocks_younger() -> None:
    older = sibling("fraud-v1", "Progressing", minutes=-5)
    decision = decide(situation(siblings=(older,)))
    assert decision.status.phase == Phase.PENDING
    assert ready_reason(decision.status) == cond.WAITING_FOR_RELEASE
    assert "'fraud-v1'" in (decision.status.message or "")


def test_finished_older_release_does_not_block() -> None:
    older = sibling("fraud-v1", "RolledBack", minutes=-5)
    assert in_flight_blocker(situation(siblings=(older,))) is None


def test_active_release_holds_slot_even_if_younger() -> None:
    younger = sibling("fraud-v3", "Progressing", minutes=5)
    md = model(active="fraud-v3")
    assert in_flight_blocker(situation(model=md, siblings=(younger,))) == "fraud-v3"


def test_holder_of_slot_is_not_blocked_by_older_pending() -> None:
    older = sibling("fraud-v1", "Pending", minutes=-5)
    md = model(active="fraud-v2")
    assert in_flight_blocker(situation(model=md, siblings=(older,))) is None


def test_same_timestamp_breaks_tie_by_name() -> None:
    twin = sibling("fraud-a", "Pending", minutes=0)
    assert in_flight_blocker(situation(siblings=(twin,))) == "fraud-a"


def test_deleting_sibling_does_not_block() -> None:
    older = sibling("fraud-v1", "Progressing", minutes=-5)
    gone = type(older)(older.name, older.phase, older.created, deleting=True)
    assert in_flight_blocker(situation(siblings=(gone,))) is None


@pytest.mark.parametrize(
    ("mine", "theirs", "stray", "expected"),
    [
        (0, 0, 0, 0),
        (1, 3, 0, 25),
        (2, 0, 0, 100),
        (1, 1, 0, 50),
        (0, 4, 0, 0),
        # A third release's ready pods are behind the same Service: they take their share.
        (1, 3, 1, 20),
        (2, 2, 1, 40),
        (1, 0, 1, 50),
        (0, 3, 1, 0),
        (4, 0, 4, 50),
    ],
)
def test_achieved_weight_is_the_share_of_every_ready_pod(
    mine: int, theirs: int, stray: int, expected: int
) -> None:
    deps = {"s": deployment("s", ready=theirs), "old": deployment("old", ready=stray)}
    if mine:
        deps["c"] = deployment("c", ready=mine)
    assert achieved_weight(deps, "c") == expected


def test_observed_generation_is_always_set() -> None:
    assert decide(situation(model=None)).status.observed_generation == 1


def test_a_refused_release_does_not_block_others() -> None:
    decision = decide(situation(release=release(strategy="shadow"), model=model(stable="fraud-v1")))
    assert decision.status.phase == Phase.FAILED
    assert ready_reason(decision.status) == cond.ROUTER_NOT_SUPPORTED
    stuck = type(sibling("x"))(
        "fraud-v0", "Pending", T0 - timedelta(minutes=5), reason=cond.STRATEGY_NOT_SUPPORTED
    )
    assert in_flight_blocker(situation(siblings=(stuck,))) is None


def test_direct_release_at_the_wrong_size_is_not_promoted() -> None:
    md = model(stable="fraud-v1", active="fraud-v2", replicas=4)
    deps = {
        "fraud-v1": deployment("fraud-v1", 4, 4),
        "fraud-v2": deployment("fraud-v2", 1, replicas=1),
    }
    decision = decide(situation(release=release(strategy="direct"), model=md, deployments=deps))
    assert decision.status.phase == Phase.PROGRESSING
    assert ScaleDeployment("fraud-fraud-v2", 4) in decision.actions or any(
        isinstance(a, ApplyObject) and a.body["spec"]["replicas"] == 4 for a in decision.actions
    )


def test_abort_works_for_a_direct_release() -> None:
    rel = release(strategy="direct", status={"phase": "Progressing", "startedAt": T0.isoformat()})
    rel.metadata.annotations = {"slipway.dev/action": "abort"}
    md = model(stable="fraud-v1", active="fraud-v2")
    deps = {"fraud-v1": deployment("fraud-v1", 2), "fraud-v2": deployment("fraud-v2", 0)}
    decision = decide(situation(release=rel, model=md, deployments=deps))
    assert decision.status.phase == Phase.ROLLED_BACK
    assert ScaleDeployment("fraud-fraud-v2", 0) in decision.actions


def test_refused_rollback_request_does_not_abort_the_release_in_flight() -> None:
    md = model(stable="fraud-v1", active="fraud-v2")
    md.metadata.annotations = {"slipway.dev/rollback-to": "typo@1"}
    rel = release(strategy="direct", status={"phase": "Progressing", "startedAt": T0.isoformat()})
    decision = decide(
        situation(release=rel, model=md, deployments={"fraud-v2": deployment("fraud-v2", 1)})
    )
    assert decision.status.phase == Phase.PROGRESSING


def _mesh_situation(route: Any = None) -> Situation:
    """A direct release on istio (no route status: its spec read back is what is live)."""
    md = model(stable="fraud-v1", active="fraud-v2", **routed("istio"))
    deps = {"fraud-v1": deployment("fraud-v1", 2, 2), "fraud-v2": deployment("fraud-v2", 2, 2)}
    return situation(release=release(strategy="direct"), model=md, deployments=deps, route=route)


def test_a_direct_release_behind_a_route_moves_every_request_before_the_old_stable_goes() -> None:
    from slipway.traffic import istio
    from slipway.traffic.routes import RoutePlan, route_body

    first = decide(_mesh_situation())
    assert first.status.phase == Phase.PROGRESSING
    assert not any(isinstance(a, ScaleDeployment) and a.replicas == 0 for a in first.actions)
    routes = [a for a in first.actions if isinstance(a, ApplyObject)]
    assert any(a.body["kind"] == "VirtualService" for a in routes)
    assert "moving every request to it" in (first.status.message or "")
    md = model(stable="fraud-v1", active="fraud-v2", **routed("istio"))
    body = route_body(md, RoutePlan((("fraud-v2", 100),)), istio.build)
    done = decide(_mesh_situation(route=istio.observe(body)))
    assert done.status.phase == Phase.SUCCEEDED
    assert ScaleDeployment("fraud-fraud-v1", 0) in done.actions


def test_a_failed_direct_release_behind_a_route_gives_the_route_back_to_the_stable() -> None:
    from slipway.traffic import istio
    from slipway.traffic.routes import RoutePlan, route_body

    md = model(stable="fraud-v1", active="fraud-v2", **routed("istio"))
    body = route_body(md, RoutePlan((("fraud-v2", 100),)), istio.build)
    late = T0 + timedelta(minutes=10)
    rel = release(strategy="direct", status={"phase": "Progressing", "startedAt": T0.isoformat()})
    s = situation(
        release=rel,
        model=md,
        deployments={
            "fraud-v1": deployment("fraud-v1", 2, 2),
            "fraud-v2": deployment("fraud-v2", 0, replicas=2),
        },
        route=istio.observe(body),
        now=late,
    )
    decision = decide(s)
    assert decision.status.phase == Phase.FAILED
    applied = [a.body for a in decision.actions if isinstance(a, ApplyObject)]
    route = next(b for b in applied if b["kind"] == "VirtualService")
    hosts = [d["destination"]["host"] for d in route["spec"]["http"][0]["route"]]
    assert hosts == ["fraud-fraud-v1.ns.svc.cluster.local"]


def test_a_direct_release_a_silent_gateway_never_took_fails_naming_the_generation() -> None:
    from slipway.traffic import gatewayapi
    from slipway.traffic.routes import RoutePlan, route_body

    md = model(stable="fraud-v1", active="fraud-v2", **routed("gatewayAPI"))
    body = route_body(md, RoutePlan((("fraud-v2", 100),)), gatewayapi.build)
    body["metadata"]["generation"] = 7
    body["status"] = {
        "parents": [
            {
                "parentRef": {"name": "web"},
                "conditions": [{"type": "Accepted", "status": "True", "observedGeneration": 6}],
            }
        ]
    }
    both = {"fraud-v1": deployment("fraud-v1", 2, 2), "fraud-v2": deployment("fraud-v2", 2, 2)}
    rel = release(strategy="direct", status={"phase": "Progressing", "startedAt": T0.isoformat()})
    waiting = decide(
        situation(release=rel, model=md, deployments=both, route=gatewayapi.observe(body))
    )
    assert waiting.status.phase == Phase.PROGRESSING
    assert "generation 7 has no status from its data plane yet" in (waiting.status.message or "")
    assert not any(isinstance(a, (RecordStable, ScaleDeployment)) for a in waiting.actions)
    late = situation(
        release=rel,
        model=md,
        deployments=both,
        route=gatewayapi.observe(body),
        now=T0 + timedelta(minutes=11),
    )
    failed = decide(late)
    assert failed.status.phase == Phase.FAILED
    assert "not taken by its data plane within progressDeadline" in (failed.status.message or "")
    assert "HTTPRoute 'fraud' generation 7" in (failed.status.message or "")
    assert "Gateway web last answered generation 6" in (failed.status.message or "")
    # The generation the Gateway last took may still send v2 requests: v2 keeps its pods
    # (the model pass prunes it once the live route no longer names it), v1 is untouched.
    assert not any(isinstance(a, (DeleteDeployment, ScaleDeployment)) for a in failed.actions)
